"""statusq's producer for the peer bench (runs in the product's venv, statusq from this checkout).

    python bench/peers/statusq_peer.py --count N [--sleep S] [--gap G]

$PEERS_CONFIG names the config the driver wrote for the run ([queue.stomp] confirm_sends says
whether each enqueue waits for the broker's receipt), $PEERS_TRANSPORT the handler ("peer_work",
or "peer_async" for the async one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tally

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # statusq from this checkout
import statusq

TRANSPORT = os.environ.get("PEERS_TRANSPORT", "peer_work")
qm = statusq.connect(os.environ["PEERS_CONFIG"])


def send(item: int, sent: float, sleep: float) -> None:
    qm.enqueue({"i": item, "sent": sent, "sleep": sleep}, TRANSPORT)


if __name__ == "__main__":
    tally.producer_main(send, qm.close)
