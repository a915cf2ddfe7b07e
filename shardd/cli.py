"""`shardd-server`: the command line, shaped like valkey-server's.

    shardd-server [CONFIGFILE] [--directive value ...]
    shardd-server -c CONFIGFILE [--directive value ...]

Every `--name value` pair is a config directive appended after the file, exactly as
valkey-server treats it (e.g. `--port 7000 --save "" --dir /tmp/x`).
"""
from __future__ import annotations

import sys

import click

from . import VALKEY_VERSION, __version__, config


def _split_config_file(args: tuple[str, ...],
                       config_file: str | None) -> tuple[str | None, list[str]]:
    """The first argument is the config file when it does not start with '-' (valkey-server)."""
    tokens = list(args)
    if config_file is None and tokens and not tokens[0].startswith("-"):
        config_file = tokens.pop(0)
    return config_file, tokens


@click.command(
    context_settings=dict(ignore_unknown_options=True, allow_extra_args=True,
                          help_option_names=["-h", "--help"]),
    options_metavar="[OPTIONS]",
    epilog="Examples:\n\n\b\n  shardd-server (run with the defaults)\n"
           "  shardd-server /etc/shardd/6379.conf\n  shardd-server --port 7777\n"
           "  shardd-server /etc/myshardd.conf --loglevel verbose --save \"\"",
)
@click.option("-c", "--config", "config_file", metavar="CONFIGFILE", default=None,
              help="Read this config file (same as giving it first).")
@click.option("-v", "--version", "show_version", is_flag=True, help="Print the version and exit.")
@click.option("--test-config", is_flag=True,
              help="Only load the configuration, report whether it is valid, and exit.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED,
                metavar="[CONFIGFILE] [--directive value ...]")
def main(config_file: str | None, show_version: bool, test_config: bool,
         args: tuple[str, ...]) -> None:
    """Start a Valkey-compatible shardd server."""
    if show_version:
        click.echo(f"shardd-server v={__version__} (Valkey-compatible {VALKEY_VERSION})")
        return
    path, overrides = _split_config_file(args, config_file)
    try:
        cfg = config.load(path, overrides)
    except config.ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if test_config:
        click.echo("Configuration test passed")
        return
    try:
        from . import supervisor
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.supervisor":
            raise
        click.echo("shardd-server: the supervisor module is not available", err=True)
        sys.exit(1)
    sys.exit(supervisor.run(cfg))


if __name__ == "__main__":
    main()
