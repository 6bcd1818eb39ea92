"""llmdeploy: from a YAML profile to a verified, running OpenAI-compatible server.

Kept import-free on purpose: `python -m llmdeploy.run.guardian` and the CLI's start-up
time both pay for whatever this module imports.
"""

__version__ = "0.1.0"
