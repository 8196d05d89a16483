"""The Slack front end: ``/wasm`` slash commands, one live message per job, buttons, announcements."""
