"""A LiteLLM callback for the e2e tests (litellm-test.yaml's `callbacks`): one JSON line per
successful call, with the end user LiteLLM attributes it to, in the file E2E_ATTRIBUTION_LOG names.

LiteLLM loads it from the config file's folder by module name; it runs inside LiteLLM.
"""

import json
import os

from litellm.integrations.custom_logger import CustomLogger


class AttributionLog(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        path = os.environ.get("E2E_ATTRIBUTION_LOG")
        if not path:
            return
        logged = kwargs.get("standard_logging_object") or {}
        metadata = logged.get("metadata") or {}
        record = {
            "call_id": kwargs.get("litellm_call_id"),
            "end_user": logged.get("end_user"),
            "metadata_end_user": metadata.get("user_api_key_end_user_id"),
            "model_group": logged.get("model_group"),
        }
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")


proxy_handler_instance = AttributionLog()
