"""Child process of the crash test: appends forever, printing each receipt id once it is durable.

Usage: python crash_child.py DATA_DIR SEED [EVERY]. The parent SIGKILLs it at arbitrary moments;
every id printed here was returned by ``append_batch``, i.e. acknowledged. With EVERY, it signs
the latest checkpoint after every EVERY-th batch, as the actor's interval does after commits
(without: never), so a kill mostly falls between appends and their checkpoint.
"""

import random
import sys

from tai_autonomics.ledger import DB_FILE, Ledger, ReceiptDraft, SQLiteStore, load_ledger_key


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    every = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rng = random.Random(seed)
    ledger = Ledger.open(SQLiteStore(f"{data_dir}/{DB_FILE}"), load_ledger_key(data_dir=data_dir))
    n = batches = 0
    while True:
        drafts = []
        for _ in range(rng.randint(1, 4)):
            n += 1
            chain = rng.choice(["policy-a", "policy-b", None])
            if chain is None:
                drafts.append(ReceiptDraft("pricing.quoted", "eval", {"n": n, "seed": seed}))
            else:
                drafts.append(ReceiptDraft("deploy.intent", "prod", {"n": n, "seed": seed}, chain=chain))
        for receipt in ledger.append_batch(drafts):
            sys.stdout.write(receipt.id + "\n")
        sys.stdout.flush()
        batches += 1
        if every and batches % every == 0:
            ledger.sign_latest()


if __name__ == "__main__":
    main()
