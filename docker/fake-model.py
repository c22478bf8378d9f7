#!/usr/bin/env python3
"""The demo profile's model (docker/compose.yml, service fake-model): the test fake
tests/fakes/fake_openai.py, listening on all addresses so that the pods' containers
reach it (the fake itself listens on 127.0.0.1 only).

    python3 fake-model.py [PORT]     (fake_openai.py next to this file; PORT 8080)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_openai  # noqa: E402

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
srv = fake_openai.Server(("0.0.0.0", port), fake_openai.Handler)
print(f"listening 0.0.0.0:{srv.server_address[1]}", flush=True)
try:
    srv.serve_forever(poll_interval=0.1)
except KeyboardInterrupt:
    pass
