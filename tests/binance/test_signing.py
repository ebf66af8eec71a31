"""Request signing against Binance's documented vectors, RFC 8032 and OpenSSL."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    RsaSigner,
    encode_params,
    rest_payload,
    verify_ed25519,
    verify_hmac,
    verify_rsa,
    ws_payload,
)
from wiresens.errors import ConfigError

# rest-api.md, "SIGNED Endpoint Examples for POST /api/v3/order" (HMAC keys).
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
REST_PARAMS: dict[str, object] = {
    "symbol": "LTCBTC",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": 1,
    "price": "0.1",
    "recvWindow": 5000,
    "timestamp": 1499827319559,
}


def test_rest_hmac_query_or_body_matches_doc() -> None:
    query = encode_params(REST_PARAMS)
    assert query == (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
    )
    sig = HmacSigner(DOC_SECRET).sign(rest_payload(query))
    assert sig == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert HmacSigner(DOC_SECRET).sign(rest_payload("", query)) == sig


def test_rest_hmac_mixed_query_and_body_matches_doc() -> None:
    items = list(REST_PARAMS.items())
    query, body = encode_params(dict(items[:4])), encode_params(dict(items[4:]))
    sig = HmacSigner(DOC_SECRET).sign(rest_payload(query, body))
    assert sig == "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


# web-socket-api.md, "SIGNED request example (HMAC)": the older revision carried
# newOrderRespType=ACK, the newer one an ASCII and a non-ASCII symbol.
FULLWIDTH_123456 = "\uff11\uff12\uff13\uff14\uff15\uff16"  # the doc's non-ASCII symbol
WS_BASE: dict[str, object] = {
    "symbol": "BTCUSDT",
    "side": "SELL",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.01000000",
    "price": "52000.00",
    "recvWindow": 100,
    "timestamp": 1645423376532,
    "apiKey": DOC_API_KEY,
}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {**WS_BASE, "newOrderRespType": "ACK"},
            "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a",
        ),
        (WS_BASE, "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"),
        (
            {
                **WS_BASE,
                "symbol": FULLWIDTH_123456,
                "side": "BUY",
                "quantity": "1.00000000",
                "price": "0.10000000",
                "recvWindow": 5000,
            },
            "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd",
        ),
    ],
)
def test_ws_hmac_matches_doc(params: dict[str, object], expected: str) -> None:
    payload = ws_payload({**params, "signature": "------ FILL ME ------"})
    assert payload.startswith(f"apiKey={DOC_API_KEY}&")
    assert "signature" not in payload
    assert HmacSigner(DOC_SECRET).sign(payload) == expected
    assert verify_hmac(DOC_SECRET, payload, expected.upper())  # HMAC is case-insensitive
    assert not verify_hmac(DOC_SECRET, payload + "&x=1", expected)


def test_ws_payload_sorts_and_does_not_encode() -> None:
    assert ws_payload({"b": "x y", "a": True, "signature": "s", "c": "/&"}) == "a=true&b=x y&c=/&"


def test_encode_params_percent_encodes_utf8_and_reserved() -> None:
    assert encode_params({"symbol": "\uff11\uff12", "x": "a b&c", "ok": False}) == (
        "symbol=%EF%BC%91%EF%BC%92&x=a%20b%26c&ok=false"
    )


# RFC 8032 section 7.1, TEST 1 and TEST 2 (Ed25519 is deterministic).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        b"",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        b"\x72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


def _ed25519_pem(seed_hex: str) -> bytes:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(("seed", "message", "expected"), RFC8032)
def test_ed25519_rfc8032_vectors(seed: str, message: bytes, expected: str) -> None:
    signer = Ed25519Signer(_ed25519_pem(seed))
    sig = signer.sign(message.decode("latin-1"))
    assert base64.b64decode(sig).hex() == expected
    assert verify_ed25519(signer.public_key_pem(), message.decode("latin-1"), sig)


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


DOC_WS_PAYLOAD = ws_payload(WS_BASE)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_rsa_and_ed25519_equal_openssl_as_in_doc(tmp_path: Path) -> None:
    # The docs cross-check with `openssl dgst -sha256 -sign` (RSA) and
    # `openssl dgst -sign` (Ed25519) but do not publish the keys; both schemes are
    # deterministic, so OpenSSL with our own key must give the very same bytes.
    for pem, signer, cmd in (
        (p := _rsa_pem(), RsaSigner(p), ["openssl", "dgst", "-sha256", "-sign"]),
        (
            q := _ed25519_pem("11" * 32),
            Ed25519Signer(q),
            # pkeyutl's one-shot Ed25519 needs a file, not stdin
            ["openssl", "pkeyutl", "-sign", "-rawin", "-in", str(tmp_path / "msg"), "-inkey"],
        ),
    ):
        (tmp_path / "msg").write_bytes(DOC_WS_PAYLOAD.encode())
        key_file = tmp_path / "key.pem"
        key_file.write_bytes(pem)
        out = subprocess.run(
            [*cmd, str(key_file)], input=DOC_WS_PAYLOAD.encode(), capture_output=True, check=True
        ).stdout
        assert signer.sign(DOC_WS_PAYLOAD) == base64.b64encode(out).decode()


def test_rsa_round_trip_and_tamper() -> None:
    signer = RsaSigner(_rsa_pem())
    sig = signer.sign(DOC_WS_PAYLOAD)
    pub = signer.public_key_pem()
    assert verify_rsa(pub, DOC_WS_PAYLOAD, sig)
    assert not verify_rsa(pub, DOC_WS_PAYLOAD.replace("SELL", "BUY"), sig)
    assert not verify_rsa(pub, DOC_WS_PAYLOAD, "not base64!")
    assert not verify_ed25519(pub, DOC_WS_PAYLOAD, sig)  # wrong key type
    assert not verify_rsa(b"garbage", DOC_WS_PAYLOAD, sig)


def test_encrypted_key_and_wrong_type_refused_with_config_error() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert Ed25519Signer(enc, password=b"pw").sign("a")
    with pytest.raises(ConfigError, match="password"):
        Ed25519Signer(enc)
    with pytest.raises(ConfigError, match="not RSA"):
        RsaSigner(enc, password=b"pw")
    with pytest.raises(ConfigError, match="empty"):
        HmacSigner("")
    assert "NhqPt" not in repr(HmacSigner(DOC_SECRET))


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8),
        st.one_of(st.text(st.characters(blacklist_categories=("Cs",))), st.integers()),
        max_size=6,
    )
)
def test_ed25519_signs_any_ws_payload(params: dict[str, object]) -> None:
    signer = Ed25519Signer(_ed25519_pem(RFC8032[0][0]))
    payload = ws_payload(params)
    sig = signer.sign(payload)
    assert verify_ed25519(signer.public_key_pem(), payload, sig)
    assert not verify_ed25519(signer.public_key_pem(), payload + "x", sig)
