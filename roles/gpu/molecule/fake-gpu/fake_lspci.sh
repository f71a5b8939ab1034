#!/bin/sh
# TEST DOUBLE of `lspci -nn` for the fake-gpu molecule scenario: a server with a Tesla T4
# (line from tests/unit/samples/gpu/lspci-t4-server.txt; source named there).
echo "00:00.0 Host bridge [0600]: Intel Corporation Sky Lake-E DMI3 Registers [8086:2020] (rev 07)"
echo "af:00.0 3D controller [0302]: NVIDIA Corporation TU104GL [Tesla T4] [10de:1eb8] (rev a1)"
