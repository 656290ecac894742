"""Swap fastsock in for the stdlib socket module in every process that has this
directory on PYTHONPATH (.ci/thirdparty's swapped runs): the swap a user makes
with ``sys.modules["socket"] = fastsock``, done before any library imports socket.
The stdlib module is kept here so the probe can find modules still holding it."""
import sys

import fastsock

STDLIB_SOCKET = sys.modules.get("socket")
sys.modules["socket"] = fastsock
