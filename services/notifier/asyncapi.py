"""Prints the notifier's AsyncAPI document (JSON): `make docs` writes it to docs/asyncapi.json.

Built from the FastStream app itself, so it cannot drift from the code. Nothing connects.
"""

from __future__ import annotations

import json

from libs.settings import Settings
from services.notifier.app import NotifierApp


def document(settings: Settings | None = None) -> dict:
    notifier = NotifierApp(settings or Settings(), consumer="<hostname>-<pid>")
    return notifier.specification.to_specification().to_jsonable()


def main() -> None:
    print(json.dumps(document(), indent=2, sort_keys=False))


if __name__ == "__main__":
    main()
