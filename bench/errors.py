"""The one error type for bad external input.

Every check of something a user hands the suite (suite files, command-line values, image folders and arrays,
weights files, dataset files, cache files) raises a subclass of :class:`InputError` whose message is one line:
what was found, where, and what is accepted. The CLI turns any of them into ``bench: error: <message>`` on
stderr and exit code 2; nothing else is ever reported that way.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad external input; ``str(err)`` is the one line the CLI prints (exit code 2)."""

    def __str__(self) -> str:
        # one line whatever the message holds (a file name with a newline, a multi-line library message)
        text = str(self.args[0]) if len(self.args) == 1 else super().__str__()  # KeyError subclasses would quote it
        return " ".join(text.splitlines()).strip()


class SpecError(InputError):
    """A suite file is invalid; the message names the file and the key (or line)."""
