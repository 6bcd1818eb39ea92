from __future__ import annotations

import json

from llmdeploy.output import out
from llmdeploy.profile.model import Profile


def run() -> int:
    schema = Profile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmdeploy profile"
    out(json.dumps(schema, indent=2))
    return 0
