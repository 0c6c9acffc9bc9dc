"""One API node of ``bench.cluster_list``: a read-only file served with a static owner table.

    python -m bench._cluster_node DB PORT ME OWNERS_JSON KEYS_JSON
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from api.app import create_app
    from api.keys import KeyRing
    from api.limits import Limits
    from api.readstore import ReadStore
    from api.routing import StaticOwners
    from api.server import build_foreground_server, read_only_status
    from projector.intake.metrics import Metrics

    db, port, me, owners_json, keys_json = sys.argv[1:6]
    table: dict[int, str | None] = {int(p): u for p, u in json.loads(owners_json).items()}
    owners = StaticOwners(me, len(table), table) if me != "-" else None
    reader = ReadStore.open_file(db)
    snapshot = read_only_status(reader)
    app = create_app(reader, keys=KeyRing.from_dict(json.loads(keys_json)),
                     status=lambda: snapshot, metrics=Metrics(),
                     limits=Limits(rate=0, anon_rate=0), owners=owners)
    build_foreground_server(app, "127.0.0.1", int(port)).run()
    reader.close()


if __name__ == "__main__":
    main()
