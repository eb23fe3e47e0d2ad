"""Driver script for spark-submit (EMR steps) and AWS Glue jobs.

    spark-submit --master yarn "$(python3 -c 'import ddbmigrate.integrations.spark.entry as m; print(m.__file__)')" \\
        copy SOURCE TARGET --segments 256 --dead-letter s3://bucket/dead/copy.jsonl

    # AWS Glue (Spark job, job parameter --additional-python-modules ddbmigrate), script:
    #     import sys
    #     from ddbmigrate.integrations.spark.entry import main
    #     sys.exit(main())
    # with the job parameter  --ddbmigrate_args "copy SOURCE TARGET --segments 256"

It runs the ordinary ``ddbmigrate`` command line inside the SparkContext that spark-submit or
Glue configured (master, executors, memory), adding ``--engine spark`` to ``copy``, ``export``
and ``verify`` when the command line does not choose an engine. Glue passes its own arguments
(``--JOB_ID``, ``--TempDir``, ...) to the script, so under Glue the ddbmigrate command line is
read from the single job parameter ``--ddbmigrate_args`` instead of the raw argument list.

Returns the CLI's exit code (0 done, 3 done with dead letters, 4 verify found differences,
75 resumable, ...): a non-zero exit fails the EMR step / Glue job run, so alarms fire.
"""

from __future__ import annotations

import shlex
import sys
from typing import List, Optional

GLUE_ARGS = "--ddbmigrate_args"
SPARK_COMMANDS = ("copy", "export", "verify")


def command_line(argv: List[str]) -> List[str]:
    """The ddbmigrate arguments: ``--ddbmigrate_args "..."`` (Glue) or the arguments as given."""
    args = list(argv)
    for i, a in enumerate(argv):
        if a == GLUE_ARGS and i + 1 < len(argv):
            args = shlex.split(argv[i + 1])
            break
        if a.startswith(GLUE_ARGS + "="):
            args = shlex.split(a.split("=", 1)[1])
            break
    if args and args[0] in SPARK_COMMANDS and not any(a == "--engine" or a.startswith("--engine=") for a in args):
        args[1:1] = ["--engine", "spark"]
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = command_line(list(sys.argv[1:] if argv is None else argv))
    # Create the context from spark-submit's / Glue's configuration before ddbmigrate looks for it.
    from pyspark.sql import SparkSession

    SparkSession.builder.appName("ddbmigrate " + (args[0] if args else "")).getOrCreate()
    from ...cli import main as cli

    try:
        cli.main(args=args, prog_name="ddbmigrate", standalone_mode=True)
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
