"""The ``ddbmigrate`` command line: parse options, call one library function, render the result.

Library errors map to exit codes here (see errors.py); nothing below this package talks to
click, and nothing in this package talks to AWS.
"""

from __future__ import annotations

import click

from . import (
    commands_copy,
    commands_estimate,
    commands_files,
    commands_local,
    commands_migrations,
    commands_plan,
    commands_replicate,
    commands_schema,
    commands_update,
    commands_verify,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="ddbmigrate")
def main() -> None:
    """Move data between DynamoDB tables and files, safely and fast."""


for _family in (commands_copy, commands_local, commands_files, commands_verify, commands_replicate, commands_schema,
                commands_plan, commands_update, commands_migrations, commands_estimate):
    _family.register(main)
