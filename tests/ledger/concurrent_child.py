"""Child of the two-writer test: appends COUNT single-receipt batches to chain 'shared'.

Usage: python concurrent_child.py sqlite PATH COUNT | firestore NAME COUNT. Prints each receipt id
after append_batch returned (acknowledged); exits 0 when done.
"""

import sys

from tai_autonomics.ledger import Ledger, LedgerKey, ReceiptDraft, SQLiteStore


def main() -> None:
    kind, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "sqlite":
        store = SQLiteStore(target)
    else:
        from tai_autonomics.ledger.firestore_store import FirestoreStore

        store = FirestoreStore(target, project=sys.argv[4])
    key = LedgerKey.from_pem(sys.stdin.buffer.read(), "stdin")
    ledger = Ledger.open(store, key)
    for i in range(count):
        (receipt,) = ledger.append_batch([ReceiptDraft("deploy.intent", "prod", {"i": i}, chain="shared")])
        print(receipt.id, flush=True)
    ledger.close()


if __name__ == "__main__":
    main()
