"""The GitHub front end: webhook, PR comment commands, checks, releases and new repositories."""
