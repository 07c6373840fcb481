"""A Language Server Protocol server for definition files (`endpointc lsp`), on pygls.

Editors get the checker's diagnostics as the curator types, hover (an endpoint in plain
words, what it includes and what includes it; a code pattern, and the codes of a
configured registry it matches, counts masked), go to definition, references and rename of
endpoint and codelist names across files, completion, the outline, folding and formatting.
docs/editors.md says how to use it from VS Code, Neovim and Emacs.

`analysis` holds what is known about a library, `features` turns it into answers, and
`server` is the pygls wiring (which library a file belongs to, when it is checked).
"""

from __future__ import annotations

from typing import BinaryIO

__all__ = ["serve"]


def serve(*, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """Serve one editor over stdin and stdout until it shuts the server down."""
    from .server import build_server

    build_server().start_io(stdin, stdout)
