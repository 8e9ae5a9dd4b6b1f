"""The certificate state shared through Firestore (docs/specification.md §10), on the session's emulator: two
CertManager cores stand for two instances of one deployment, with real certificates from a CA."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from google.cloud import firestore

from tai_autonomics.trust import CertificateAuthority, CertificateVerifier, CertManager, sample_policy
from tai_autonomics.trust._files import private_key_pem
from tai_autonomics.trust._time import utcnow
from tai_autonomics.trust.errors import CertMalformed, CertNotLoaded, CertStateConflict, CertStateCorrupt, RenewalFailed
from tai_autonomics.trust.firestore_cert_store import FirestoreCertStore
from tai_autonomics.trust.issuing import generate_private_key
from tests.helpers import EMULATOR_PROJECT

DAY = dt.timedelta(days=1)


class CaRenewer:
    """The insurer's renewal endpoint, played by the CA."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca

    def renew(self, csr_pem: bytes) -> bytes:
        now = utcnow()
        return self.ca.issue(csr_pem, sample_policy(), now - dt.timedelta(minutes=5), now + 90 * DAY).public_bytes(
            Encoding.PEM)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate("Insurer CA", now=utcnow() - DAY)


@pytest.fixture
def instances(firestore_emulator: str,
              ca: CertificateAuthority) -> Iterator[Callable[[str], CertManager]]:
    """Opens "instances" of one fresh deployment: CertManager cores on one shared store each."""
    name, opened = f"test-{uuid.uuid4().hex[:12]}", []

    def instance(instance_name: str) -> CertManager:
        store = FirestoreCertStore(name, instance=instance_name, project=EMULATOR_PROJECT)
        opened.append(store)
        return CertManager(store, CertificateVerifier(ca.certificate), renewer=CaRenewer(ca))

    yield instance
    for store in opened:
        store.close()


def first_certificate(ca: CertificateAuthority) -> tuple[bytes, bytes]:
    key = generate_private_key()
    now = utcnow()
    certificate = ca.issue(key.public_key(), sample_policy(), now - DAY, now + 60 * DAY)
    return certificate.public_bytes(Encoding.PEM), private_key_pem(key)


def document(manager: CertManager) -> firestore.DocumentReference:
    client = firestore.Client(project=EMULATOR_PROJECT)
    return client.document(manager.store.where.removeprefix("Firestore document "))


def test_a_renewal_on_one_instance_is_adopted_by_the_other_without_any_key_stored(instances, ca) -> None:
    a, b = instances("a"), instances("b")
    installed = a.install(*first_certificate(ca))
    assert b.load().fingerprint == installed.fingerprint and b.refresh() is None
    outcome = a.renew()
    assert outcome.renewed
    adopted = b.refresh()
    assert adopted is not None and adopted.fingerprint == outcome.certificate.fingerprint == b.current.fingerprint
    stored = document(a).get().to_dict()
    assert stored["installed_by"] == "a" and stored["fingerprint"] == adopted.fingerprint
    assert "PRIVATE KEY" not in repr(stored)
    assert a.private_key.public_key() == adopted.certificate.public_key()  # the renewing instance holds it
    with pytest.raises(CertNotLoaded, match="keeps no keys"):
        _ = b.private_key
    archived = list(document(a).collection("archive").stream())
    assert [d.get("fingerprint") for d in archived] == [installed.fingerprint]


def test_revocation_and_renewal_backoff_are_shared(instances, ca) -> None:
    a, b = instances("a"), instances("b")
    a.install(*first_certificate(ca))
    b.load()
    assert a.mark_revoked("key compromise (test)")
    assert not b.revoked
    b.refresh()
    assert b.revoked and b.renewal_due()


def test_the_first_certificate_is_installed_once_and_a_late_renewal_is_refused(instances, ca) -> None:
    a, b = instances("a"), instances("b")
    a.install(*first_certificate(ca))
    with pytest.raises(CertStateConflict):
        b.install(*first_certificate(ca))  # b read nothing, but a created it meanwhile
    b.load()
    # both renew the same certificate: the store takes the first, the second is refused and kept out
    request = b.begin_renewal()
    assert a.renew().renewed
    late = b.complete_renewal(request, CaRenewer(ca).renew(request.csr_pem))
    assert not late.renewed and late.error.code == "cert_state_conflict"
    assert b.refresh().fingerprint == a.current.fingerprint == document(a).get().get("fingerprint")


def test_the_lease_is_taken_by_one_of_two_concurrent_takers(instances) -> None:
    stores = [instances(name).store for name in ("a", "b", "c", "d")]
    start = threading.Barrier(len(stores))
    answers: dict[str, str | None] = {}

    def take(store: FirestoreCertStore) -> None:
        start.wait()
        answers[store.instance] = store.take_lease(60)

    threads = [threading.Thread(target=take, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, holder in answers.items() if holder is None]
    assert len(winners) == 1, answers
    assert all(holder == winners[0] for name, holder in answers.items() if name != winners[0])
    assert next(s for s in stores if s.instance == winners[0]).take_lease(60) is None  # extends its own


def test_an_expired_lease_is_taken_over_and_a_released_one_is_free(instances) -> None:
    a, b = instances("a").store, instances("b").store
    assert a.take_lease(0) is None  # expires at once: a died mid-renewal
    assert b.take_lease(60) is None
    assert a.take_lease(60) == "b"
    a.release_lease()  # not a's any more: left alone
    assert a.take_lease(60) == "b"
    b.release_lease()
    assert a.take_lease(60) is None


@pytest.mark.parametrize("edit, error, words", [
    ({"bundle": "-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n"}, CertMalformed, ""),
    ({"bundle": 42}, CertStateCorrupt, "field 'bundle' is not a PEM text"),
    ({"state": {"fingerprint": 1, "warned_days": "x"}}, CertStateCorrupt, "field 'state'"),
])
def test_a_document_edited_into_nonsense_is_named_and_the_held_certificate_stays(instances, ca, edit, error,
                                                                                 words) -> None:
    a, b = instances("a"), instances("b")
    held = a.install(*first_certificate(ca))
    b.load()
    document(a).update(edit)
    with pytest.raises(error) as refused:
        b.refresh()
    assert f"Firestore document certificates/{document(a).id}" in refused.value.message
    assert words in refused.value.message
    assert b.current.fingerprint == held.fingerprint
    b.preflight(0)
    assert b.mark_revoked("revoked (test): saved or not, this instance refuses at once")
    assert b.revoked
    with pytest.raises(error, match=f"Firestore document certificates/{document(a).id}"):
        instances("c").load()  # an instance starting now has nothing to keep: its start names the document


def test_a_failed_renewal_backs_off_for_every_instance(instances, ca) -> None:
    a, b = instances("a"), instances("b")
    a.install(*first_certificate(ca))
    b.load()
    a.mark_revoked("revoked (test): a renewal is due at once")
    request = a.begin_renewal()
    outcome = a.renewal_failed(request, RenewalFailed("insurer down (test)"))
    b.refresh()
    assert b.next_renewal_at == outcome.next_attempt_at > utcnow() and not b.renewal_due()
