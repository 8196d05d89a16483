"""wasmbot front ends: the command parser, the CLI and the web application."""
