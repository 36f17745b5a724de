# Both binaries in one build; pick the image with --target:
#   docker build --target datastorage -t datastorage .
#   docker build --target notification-controller -t notification-controller .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p datastorage -p notification-controller \
 && mkdir -p /out \
 && cp target/release/datastorage target/release/notification-controller /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS datastorage
COPY --from=build /out/datastorage /usr/local/bin/datastorage
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/datastorage"]
CMD ["serve"]

FROM gcr.io/distroless/cc-debian12:nonroot AS notification-controller
COPY --from=build /out/notification-controller /usr/local/bin/notification-controller
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/notification-controller"]
CMD ["run"]
