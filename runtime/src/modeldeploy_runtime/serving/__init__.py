"""Serving one model over HTTP: load and verify it, batch its predictions, speak V1 and V2.

A request goes ``app`` (routing, limits, auth) → ``protocols`` (decode) → ``dataplane``
(batching) → ``model`` (predict). ``factory`` builds that chain from the settings for both the HTTP
server (``server``) and the Lambda function; only ``server`` imports uvicorn.
"""
