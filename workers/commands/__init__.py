"""``/wasm`` commands: typed models (models.py), one parser per command (parsing.py) and the
registry that declares each command once (registry.py).  Every front end and the pipeline
import them from here."""

from workers.commands.models import (
    ApproveCommand,
    BuildCommand,
    CancelCommand,
    Command,
    CommandError,
    DeployCommand,
    EnvironmentCommand,
    HelpCommand,
    InitCommand,
    JobCommand,
    ListCommand,
    PullRequestCommand,
    PushCommand,
    RetryCommand,
    RollbackCommand,
    SearchCommand,
    TestCommand,
    UndeployCommand,
    lang_of,
    released,
    source_of,
)
from workers.commands.parsing import LANGUAGES, PLATFORMS, TEMPLATE_LANGUAGES, check_reference
from workers.commands.registry import (
    COMMANDS,
    FRONT_ENDS,
    MAX_COMMAND_LENGTH,
    SPECS,
    Spec,
    available,
    commands_markdown,
    help_markdown,
    help_text,
    parse,
    where_text,
)

__all__ = [
    "COMMANDS", "FRONT_ENDS", "LANGUAGES", "MAX_COMMAND_LENGTH", "PLATFORMS", "SPECS", "TEMPLATE_LANGUAGES",
    "ApproveCommand", "BuildCommand", "CancelCommand", "Command", "CommandError", "DeployCommand",
    "EnvironmentCommand", "HelpCommand", "InitCommand", "JobCommand", "ListCommand", "PullRequestCommand",
    "PushCommand", "RetryCommand", "RollbackCommand", "SearchCommand", "Spec", "TestCommand",
    "UndeployCommand", "available", "check_reference", "commands_markdown", "help_markdown", "help_text",
    "lang_of", "parse", "released", "source_of", "where_text",
]
