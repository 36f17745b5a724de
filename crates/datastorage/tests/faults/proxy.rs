//! The fault proxy in front of the test PostgreSQL.

pub struct PgProxy(fault_proxy::Proxy);

impl PgProxy {
    pub fn cut(&self) {
        self.0.cut();
    }

    pub fn restore(&self) {
        self.0.restore();
    }

    /// A database URL of the test PostgreSQL, through the proxy.
    pub fn url_for(&self, url: &str) -> String {
        self.0.url_for(url, "127.0.0.1:5432")
    }
}

pub async fn postgres_proxy() -> PgProxy {
    PgProxy(
        fault_proxy::Proxy::start("127.0.0.1:5432".parse().unwrap())
            .await
            .expect("proxy starts"),
    )
}
