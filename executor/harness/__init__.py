"""Code that runs inside the sandbox container (stdlib only, Python 3.11).

Roles, all inside one hardened container (see server.py for the security statement):
  server.py     PID 1: receives jobs from the host, enforces limits, kills and cleans up
  zygote.py     pristine pre-forked interpreter that forks candidate processes fast
  candidate.py  what a forked candidate process does: compile, exec, serve calls
  runner.py     the assert-test runner: test code in its own process, candidate via RPC
  wire.py       length-prefixed JSON frames; values.py: type-tagged value codec
"""
