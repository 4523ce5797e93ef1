"""python -m services.identity [serve|rotate-key|create-admin --email E --full-name N]"""

from __future__ import annotations

import argparse
import asyncio
import sys

from libs import metrics, tracing
from libs.grpc_server import PortInUse
from libs.logging import configure_logging
from libs.settings import Settings
from libs.signing_keys import generate_signing_key
from services.identity.server import build_server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.identity")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "rotate-key", "create-admin"]
    )
    parser.add_argument("--email", help="create-admin: the administrator's email")
    parser.add_argument("--full-name", help="create-admin: the administrator's full name")
    args = parser.parse_args()
    settings = Settings()
    configure_logging("identity", settings.log_level, settings.log_json)
    if args.command == "create-admin":
        if not args.email or not args.full_name:
            parser.error("create-admin needs --email and --full-name (the password is asked)")
        # Imported here: the server needs none of it.
        from services.identity.create_admin import main as create_admin

        create_admin(args.email, args.full_name)
        return
    if args.command == "rotate-key":
        # New tokens are signed with the new key; tokens signed by older keys keep verifying.
        print(generate_signing_key(settings.jwt_keys_dir))
        return
    try:
        metrics.start(settings, "identity", settings.grpc_bind_host)
        tracing.configure(settings, "identity")
    except OSError as error:
        sys.exit(f"identity: metrics port: {error}")
    try:
        asyncio.run(build_server(settings).serve_until_signalled())
    except PortInUse as error:
        sys.exit(f"identity: {error}")


if __name__ == "__main__":
    main()
