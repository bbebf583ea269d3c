"""Code that runs inside the sandbox container (stdlib only, Python 3.11).

Roles, all inside one hardened container (see server.py for the security statement):
  server.py     PID 1: receives jobs from the host, enforces limits, kills and cleans up
  job.py        one job in the server: the candidate's pipes, the limit loop, the raw result
  links.py      the server's ends of the zygote and the runner (ZygoteLink, RunnerLink)
  zygote.py     pristine pre-forked interpreter that forks candidate processes fast
  candidate.py  what a forked candidate process does: compile, exec, serve calls
  runner.py     the assert-test runner: test code in its own process, candidate via RPC
  protocol.py   every name and message that crosses a channel (host included), defined once
  wire.py       length-prefixed JSON frames; values.py: type-tagged value codec
"""
