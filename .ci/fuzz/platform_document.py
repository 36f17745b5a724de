"""The platform's Data Storage API document, as the contract fuzzer reads it.

One change, for answers only: each event a query answers is checked with its `event_data` as
any object, because the document's `event_data` is a `oneOf` of payload schemas that it means
to be chosen by a discriminator (`event_type`), as the platform's generated client decodes it.
JSON Schema's `oneOf` knows no discriminator, and several payload schemas have no required
member, so a valid payload (the document's own example among them) matches more than one.
Requests keep the `oneOf`, so the fuzzer still sends every kind of payload. The payloads in
answers are checked the way the platform's decoder reads them by the fixtures test
(crates/datastorage/tests/api/platform.rs).

Usage: platform_document.py SOURCE.yaml TARGET.json
"""

import copy
import json
import sys

import yaml


class TextTimes(yaml.SafeLoader):
    """YAML as JSON sees it: a timestamp stays the text it is written as."""


TextTimes.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as f:
    doc = yaml.load(f, Loader=TextTimes)
schemas = doc["components"]["schemas"]
record = copy.deepcopy(schemas["AuditEventRequest"])
record["properties"]["event_data"] = {
    "type": "object",
    "description": "checked against the payload schema its event_type selects (see above)",
}
schemas["AuditEventAsAnswered"] = record
event = schemas["AuditEvent"]
assert event["allOf"][0] == {"$ref": "#/components/schemas/AuditEventRequest"}, event
event["allOf"][0] = {"$ref": "#/components/schemas/AuditEventAsAnswered"}
with open(target, "w", encoding="utf-8") as f:
    json.dump(doc, f)
