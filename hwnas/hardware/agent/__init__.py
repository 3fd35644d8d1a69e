"""`hwnas agent`: a small HTTP server on the device (`server`); `RemoteMeasurer`: the host's side of it
(`client`); what crosses the wire (`wire`).

The pattern of TVM's RPC server and Qualcomm AI Hub's profile jobs: the host sends work, the device
measures with its own backend and the shared protocol, rows stream back. Only JSON crosses the
wire: block signatures, archs of a search space (its TOML text), and timings; no pickles, no code,
no model files. Every request is schema-validated (pydantic) with bounded sizes, a token is
required (`Authorization: Bearer`, constant-time compare), the server binds to loopback unless
told otherwise, and it runs one job at a time: a second gets 409 "busy".

    POST /v1/jobs   {"device", "task", "num_classes"?, "space_toml"?, "protocol"?, "items": [...]}  -> NDJSON lines
    GET  /v1/info   the agent's host, hwnas version and its devices (available here or why not)

A job's lines are `{"index": i, "timing": {...}}` per item, then `{"done": true, "host", "versions"}`,
or `{"error": "..."}` if measuring failed. The host retries a dropped connection with the items not
yet answered, so a table build survives the agent being restarted.
"""
