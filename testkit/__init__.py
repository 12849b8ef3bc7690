"""Real processes and servers that both the tests and the benchmarks drive: `device run` in a subprocess
(daemon_process), loopback sshd "hosts" (sshlab) with CPU budgets (cpubudget), free ports and signals
(processes).

It lives beside tests/ and benchmarks/ rather than in either, so that a benchmark never imports test code
(nor pytest and its fixtures), and the tests never import a benchmark. Not installed with bloomkit: both
run from a checkout, with the repository's root on sys.path.
"""
