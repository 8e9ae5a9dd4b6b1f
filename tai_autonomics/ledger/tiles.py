"""The ledger's Merkle tree as C2SP ``tlog-tiles``: a right edge in memory, tiles in the store.

A tile of height 8 holds 256 consecutive hashes of one tree level: tile ``(L, N)`` the hashes
``N*256 .. N*256+255`` of level ``8*L`` (level 0: the leaf hashes), from which every hash of
levels ``8L .. 8L+7`` inside it is computed. Every complete, aligned subtree hash a proof needs
is thus in exactly one tile (:meth:`TiledTree._node`).

What this process keeps in memory is the right edge: per tile level, the one tile that is not
complete yet (fewer than 256 hashes; O(log n) tiles of at most 16 KB each, whatever the ledger's
size), plus a cache of complete tiles bounded in bytes. Appends extend the edge; a batch hands
the store, in its own transaction, each level-0 tile it completed and each tile of a higher
level it changed (:meth:`TiledTree.drain`). The partial level-0 tile is not stored: its hashes
are the leaf hashes of at most 255 stored receipts. Opening therefore reads a constant number of
rows (:meth:`TiledTree.load`): at most 255 leaf hashes and one tile per higher level.

Paths (:func:`tile_path`, :func:`parse_tile_path`) follow C2SP ``tlog-tiles``: ``tile/<L>/<N>``
with ``N`` in groups of three digits, ``x``-prefixed but the last (``x001/x234/067``), and
``.p/<W>`` for a partial tile of width ``W``; entry bundles at ``tile/entries/<N>``, each entry
a 16-bit big-endian length and the receipt's bytes.

Full entry bundles are stored like complete level-0 tiles: each batch hands the store the
bundles it completed (:class:`Bundler`), so serving one reads one row. The partial bundle is not
stored, for the same reason as the partial level-0 tile: it is at most 255 stored receipts,
assembled when asked, where a stored copy would be rewritten (up to 255 receipts' bytes) by every
batch. A ledger written before bundles has none for its history: they too are assembled from the
receipts when asked.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tai_autonomics.ledger.errors import ProofError, StoreCorruptError
from tai_autonomics.ledger.merkle import HASH_SIZE, MerkleTree, ProvingTree

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE
DEFAULT_CACHE_BYTES = 16 << 20
_CACHED_TILE_COST = 2 * TILE_BYTES + 512  # a complete tile expanded into its MerkleTree, with overhead
_RECENT_TILES = 4  # tiles the latest appends completed, kept apart from the read cache


@dataclass(frozen=True, slots=True)
class Tile:
    """Hashes of tile ``(level, index)``: ``width`` (1..256) hashes of tree level ``8 * level``."""

    level: int
    index: int
    hashes: bytes

    @property
    def width(self) -> int:
        """How many hashes the tile holds (256: complete)."""
        return len(self.hashes) // HASH_SIZE


class TileSource(Protocol):
    """Where a :class:`TiledTree` reads what is not in memory: a ledger store."""

    def tile(self, level: int, index: int) -> bytes | None:
        """The stored hashes of tile ``(level, index)`` (complete, or for levels above 0 as far as
        it has grown), or None if none is stored."""

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        """Stored leaf hashes of leaves ``start`` to ``end - 1``, in order."""


class TiledTree(ProvingTree):
    """An append-only RFC 9162 tree whose memory is its right edge and a byte-bounded tile cache.

    Roots and proofs are the same as :class:`~tai_autonomics.ledger.merkle.MerkleTree`'s for the
    same leaves: the proof algorithms are shared (:class:`ProvingTree`); only where a subtree
    hash comes from differs. Not thread-safe (one owner: the ledger).
    """

    @classmethod
    def built(cls, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> TiledTree:
        """A tree built from its first leaf on, by appends alone (it never reads a store): what
        verification recomputes the stored tree with, in bounded memory."""
        return cls(_NoSource(), cache_bytes=cache_bytes)

    def __init__(self, source: TileSource, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._source = source
        self._size = 0
        self._edge: list[MerkleTree] = [MerkleTree()]  # per tile level, the tile not complete yet
        self._pending: dict[tuple[int, int], MerkleTree] = {}
        self._cache: OrderedDict[tuple[int, int], MerkleTree] = OrderedDict()
        self._recent: OrderedDict[tuple[int, int], MerkleTree] = OrderedDict()
        self._cache_slots = max(1, cache_bytes // _CACHED_TILE_COST)
        self._settled: tuple[int, list[bytes]] = (0, [b""])

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    @property
    def cached_tiles(self) -> int:
        """Complete tiles held in memory (each about 33 KB): those reads brought into the cache, and
        the few the latest appends completed."""
        return len(self._cache) + len(self._recent)

    def load(self, size: int) -> None:
        """Forget the edge and take the store's tree of ``size`` leaves: at most 255 leaf hashes
        and one tile per level above 0 are read. StoreCorruptError if the store lacks them."""
        edge = []
        level = 0
        while True:
            count = size >> (TILE_HEIGHT * level)  # hashes at tree level 8*level
            index, width = divmod(count, TILE_WIDTH)
            if level == 0:
                start = index * TILE_WIDTH
                hashes = b"".join(self._source.leaf_hashes(start, start + width))
            elif width:
                hashes = (self._source.tile(level, index) or b"")[: width * HASH_SIZE]
            else:
                hashes = b""
            if len(hashes) != width * HASH_SIZE:
                raise StoreCorruptError(f"ledger store lacks hashes of tile {level}/{index} (tree size {size})")
            edge.append(MerkleTree(_split_hashes(hashes)))
            if count < TILE_WIDTH:
                break
            level += 1
        self._edge = edge
        self._forget_beyond(size)
        self.settle()

    def settle(self) -> None:
        """Remember the tree as it is now as committed: a later :meth:`truncate` to this size
        restores it from memory, without reading the store (which may be what just failed)."""
        self._settled = (self._size, [tree.leaf_bytes() for tree in self._edge])

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash; each tile it completes moves from the edge to the cache and to the
        tiles :meth:`drain` hands the store."""
        if len(leaf) != HASH_SIZE:
            raise ProofError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        self._size += 1
        value, level = leaf, 0
        while True:
            if level == len(self._edge):
                self._edge.append(MerkleTree())
            edge = self._edge[level]
            edge.append(value)
            key = (level, ((self._size >> (TILE_HEIGHT * level)) - 1) >> TILE_HEIGHT)
            if level or edge.size == TILE_WIDTH:
                self._pending[key] = edge
            if edge.size < TILE_WIDTH:
                return
            self._completed(key, edge)
            value = edge.root()
            self._edge[level] = MerkleTree()
            level += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def drain(self) -> list[Tile]:
        """The tiles the appends since the last drain (or load) completed or changed, for the
        store to write with them: complete level-0 tiles, and higher tiles as they grow."""
        tiles = [Tile(level, index, tree.leaf_bytes()) for (level, index), tree in sorted(self._pending.items())]
        self._pending.clear()
        return tiles

    def tile_hashes(self, level: int, index: int, width: int) -> bytes:
        """The first ``width`` hashes of tile ``(level, index)``, which the tree must hold."""
        if not 1 <= width <= TILE_WIDTH or (self._size >> (TILE_HEIGHT * level)) < index * TILE_WIDTH + width:
            raise ProofError(f"tile {level}/{index} of width {width} is beyond the tree of {self._size} leaves")
        return self._tile(level, index).leaf_bytes()[: width * HASH_SIZE]

    def truncate(self, size: int) -> None:
        """Go back to the store's tree of ``size`` leaves (after a transaction that did not commit;
        the store must hold at least ``size`` leaves)."""
        if not 0 <= size <= self._size:
            raise ProofError(f"cannot truncate a tree of {self._size} leaves to {size}")
        if size == self._size and not self._pending:
            return
        settled, edge = self._settled
        if size != settled:
            self.load(size)
            return
        self._edge = [MerkleTree(_split_hashes(hashes)) for hashes in edge]
        self._forget_beyond(size)

    def _forget_beyond(self, size: int) -> None:
        """Be the tree of ``size`` leaves: nothing pending, no cached tile it does not complete."""
        self._size = size
        self._pending.clear()
        for held in (self._cache, self._recent):
            for key in [key for key in held if not _complete_under(key, size)]:
                del held[key]

    def _node(self, level: int, index: int) -> bytes:
        tile_level, below = divmod(level, TILE_HEIGHT)
        first = index << below  # the subtree's first hash at tree level 8*tile_level
        tile_index, offset = divmod(first, TILE_WIDTH)
        return self._tile(tile_level, tile_index).subtree(offset, offset + (1 << below))

    def _tile(self, level: int, index: int) -> MerkleTree:
        if index == self._size >> (TILE_HEIGHT * (level + 1)):
            return self._edge[level]
        key = (level, index)
        tree = self._recent.get(key)
        if tree is not None:
            return tree
        tree = self._cache.get(key)
        if tree is not None:
            self._cache.move_to_end(key)
            return tree
        hashes = self._source.tile(level, index) or b""
        if len(hashes) < TILE_BYTES:
            raise StoreCorruptError(f"ledger store lacks complete tile {level}/{index}")
        tree = MerkleTree(_split_hashes(hashes[:TILE_BYTES]))
        self._remember(key, tree)
        return tree

    def _completed(self, key: tuple[int, int], tree: MerkleTree) -> None:
        """Keep a tile an append just completed, for the proofs of the receipts just appended, but
        only the latest few: were every completed tile cached, a daemon that only appends would fill
        the whole read cache (16 MiB) over its first hour, a growth with history that no read asked
        for. Older ones are read back from the store when a proof needs them, as after a start."""
        self._recent[key] = tree
        while len(self._recent) > _RECENT_TILES:
            self._recent.popitem(last=False)

    def _remember(self, key: tuple[int, int], tree: MerkleTree) -> None:
        self._cache[key] = tree
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_slots:
            self._cache.popitem(last=False)


def _split_hashes(hashes: bytes) -> Iterator[bytes]:
    return (hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE))


def _complete_under(key: tuple[int, int], size: int) -> bool:
    """Whether tile ``key`` is complete in the tree of ``size`` leaves."""
    level, index = key
    return (index + 1) << (TILE_HEIGHT * (level + 1)) <= size


def tiles_of(leaf_hashes: Iterable[bytes]) -> Iterator[Tile]:
    """Every tile of the tree of these leaves, as the appends write them, last version of each
    (what a store built before tiles gets when migrated, and what ``ledger verify`` expects)."""
    tree = TiledTree.built()
    written: dict[tuple[int, int], bytes] = {}
    for count, leaf in enumerate(leaf_hashes, 1):
        tree.append(leaf)
        if count % TILE_WIDTH == 0:
            for tile in tree.drain():
                if tile.width == TILE_WIDTH:
                    written.pop((tile.level, tile.index), None)
                    yield tile
                else:
                    written[(tile.level, tile.index)] = tile.hashes
    for tile in tree.drain():
        written[(tile.level, tile.index)] = tile.hashes
    for (level, index), hashes in sorted(written.items()):
        yield Tile(level, index, hashes)


def tile_from_leaves(source: TileSource, size: int, level: int, index: int) -> bytes | None:
    """Tile ``(level, index)`` of the tree of ``size`` leaves computed from the leaf hashes below it
    (up to ``256 ** (level + 1)`` of them): for a store that does not hold tiles."""
    span = 1 << (TILE_HEIGHT * level)
    start = index * TILE_WIDTH * span
    width = min(TILE_WIDTH, (size - start) // span) if size > start else 0
    if not width:
        return None
    tree = MerkleTree(source.leaf_hashes(start, start + width * span))
    if tree.size != width * span:
        raise StoreCorruptError(f"ledger store is missing leaves between {start} and {start + width * span}")
    return b"".join(tree.subtree(i * span, (i + 1) * span) for i in range(width))


class _NoSource:
    """A source for a tree built from its first leaf on: it never needs to read one."""

    def tile(self, level: int, index: int) -> bytes | None:
        raise ProofError(f"tile {level}/{index} was asked of a tree built in memory")

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        raise ProofError(f"leaves {start}..{end} were asked of a tree built in memory")


# -- C2SP tlog-tiles paths and entry bundles ------------------------------------------------------

_INDEX_PART = re.compile(r"(?:x\d{3}/)*\d{3}")


def encode_index(index: int) -> str:
    """``N`` as a C2SP tile path: groups of three digits, all but the last ``x``-prefixed."""
    if index < 0:
        raise ValueError("a tile index is not negative")
    groups = []
    while True:
        index, rest = divmod(index, 1000)
        groups.append(f"{rest:03d}")
        if not index:
            break
    groups.reverse()
    return "/".join([*(f"x{group}" for group in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` (``level`` ``"entries"`` for an entry bundle)."""
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"a tile holds 1..{TILE_WIDTH} entries, not {width}")
    partial = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{partial}"


@dataclass(frozen=True, slots=True)
class TileRequest:
    """A parsed tile path: ``level`` is None for an entry bundle."""

    level: int | None
    index: int
    width: int


def parse_tile_path(path: str) -> TileRequest:
    """Parse what follows ``tile/``: ``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``.

    ValueError for anything else: a non-canonical index (no leading ``x`` groups of zeros, since
    C2SP names each tile once), a width out of 1..255, a level out of 0..63.
    """
    head, sep, rest = path.partition("/")
    if not sep:
        raise ValueError("a tile path is <L>/<N> or entries/<N>")
    if head == "entries":
        level = None
    elif head.isdigit() and head == str(int(head)) and int(head) < 64:
        level = int(head)
    else:
        raise ValueError(f"bad tile level {head!r}")
    rest, dot, width_text = rest.partition(".p/")
    if not _INDEX_PART.fullmatch(rest):
        raise ValueError(f"bad tile index {rest!r}")
    index = int(rest.replace("x", "").replace("/", ""))
    if encode_index(index) != rest:
        raise ValueError(f"tile index {rest!r} is not in its canonical form")
    width = TILE_WIDTH
    if dot:
        if not width_text.isdigit() or width_text != str(int(width_text)) or not 1 <= int(width_text) < TILE_WIDTH:
            raise ValueError(f"bad partial tile width {width_text!r}")
        width = int(width_text)
    return TileRequest(level, index, width)


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """The C2SP entry bundle of ``entries``: each a 16-bit big-endian length and its bytes."""
    parts = []
    for entry in entries:
        if len(entry) > 0xFFFF:
            raise ValueError(f"an entry of {len(entry)} bytes does not fit a tlog-tiles bundle")
        parts.append(len(entry).to_bytes(2, "big") + entry)
    return b"".join(parts)


def full_bundle(entries: Sequence[bytes]) -> bytes | None:
    """The entry bundle of a full bundle's 256 receipts, or None if one of them is too long for a
    bundle's 16-bit length: such a bundle is not stored, and asking for it fails as it always did."""
    try:
        return entry_bundle(entries)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Bundle:
    """Full entry bundle ``index``: the C2SP bundle of receipts ``index * 256`` to ``index * 256 + 255``."""

    index: int
    entries: bytes


class Bundler:
    """The full entry bundles a ledger's appends complete, for the store to write with them.

    It keeps the receipts after the last full bundle (at most 255) as this process last committed
    them. When a batch completes a bundle and those are not known (nothing committed yet by this
    process, or another instance appended since), it reads them with ``read(start, end)`` (the
    bytes of the stored receipts ``start`` to ``end - 1``): at most 255, and only then, so opening
    a ledger reads none. :meth:`add` is one sealing attempt, which may be retried or fail;
    :meth:`settle` makes the last attempt's outcome the committed state once its batch committed.
    """

    @classmethod
    def built(cls) -> Bundler:
        """A bundler fed every receipt from the first on (a restore): it never reads a store."""
        bundler = cls(_no_read)
        bundler._committed = (0, [])
        return bundler

    def __init__(self, read: Callable[[int, int], list[bytes]]) -> None:
        self._read = read
        self._committed: tuple[int, list[bytes]] | None = None  # (first leaf, receipts) after the last full bundle
        self._pending: tuple[int, list[bytes]] | None = None

    def add(self, size: int, entries: Sequence[bytes]) -> list[Bundle]:
        """The full bundles that ``entries``, appended to the tree of ``size`` leaves, complete
        (one whose receipt is too long for a bundle is left out: see :func:`full_bundle`)."""
        first = size - size % TILE_WIDTH
        committed = self._committed
        if committed is not None and committed[0] + len(committed[1]) == size:
            held = committed[1]
        elif size - first + len(entries) >= TILE_WIDTH:
            held = self._read(first, size)
        else:  # completes none, and what precedes it is not known: read only when one is completed
            self._pending = None
            return []
        pending = [*held, *entries]
        done = len(pending) - len(pending) % TILE_WIDTH
        bundles = []
        for start in range(0, done, TILE_WIDTH):
            data = full_bundle(pending[start : start + TILE_WIDTH])
            if data is not None:
                bundles.append(Bundle((first + start) // TILE_WIDTH, data))
        self._pending = (first + done, pending[done:])
        return bundles

    def settle(self) -> None:
        """The last :meth:`add`'s batch committed: its receipts are now the committed state."""
        self._committed, self._pending = self._pending, None


def _no_read(start: int, end: int) -> list[bytes]:
    raise ProofError(f"receipts {start}..{end} were asked of a bundler fed from the first receipt on")
