//! Known-answer vectors, run through xchat's own wrappers (never the crates
//! underneath), so a wrapper that mangles an input, an output or an error
//! fails here. `tests/vectors/README.md` gives each file's origin.
//!
//! Every test counts the cases it ran and asserts the count, so a vector file
//! that stops being read cannot pass silently.

// The loaders below are test code outside `#[test]` functions: a vector
// file that cannot be read must fail the test, naming the file.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use xchat_crypto::aead::{self, Algorithm, Key};
use xchat_crypto::identity::{ExtendedPrivateKey, ExtendedPublicKey};
use xchat_crypto::kdf;
use xchat_crypto::phrase::{self, PhraseError, RecoveryPhrase, Seed};
use xchat_crypto::signature::{Signature, SigningKey, VerifyingKey};

fn vector_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(vector_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json<T: serde::de::DeserializeOwned>(name: &str) -> T {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("bad hex {text:?}: {e}"))
}

fn array<const N: usize>(text: &str) -> [u8; N] {
    unhex(text)
        .try_into()
        .unwrap_or_else(|v: Vec<u8>| panic!("expected {N} bytes, got {}", v.len()))
}

// --- BIP39 ----------------------------------------------------------------------

/// `vectors.json`: language -> `[entropy, mnemonic, seed, xprv]`, passphrase "TREZOR".
#[derive(Deserialize)]
struct Bip39Vectors {
    english: Vec<[String; 4]>,
}

const BIP39_PASSPHRASE: &str = "TREZOR";

#[test]
fn bip39_24_word_vectors_round_trip_through_recovery_phrase() {
    let vectors: Bip39Vectors = json("bip39/vectors.json");
    let mut ran = 0;
    for [entropy, mnemonic, seed, xprv] in &vectors.english {
        if mnemonic.split(' ').count() != phrase::WORDS {
            continue;
        }
        let entropy = array::<{ phrase::ENTROPY_BYTES }>(entropy);
        let from_entropy = RecoveryPhrase::from_entropy(&entropy);
        assert_eq!(*from_entropy.to_words(), *mnemonic);

        let parsed = RecoveryPhrase::parse(mnemonic).unwrap();
        assert_eq!(*parsed.entropy(), entropy, "{mnemonic}");

        let derived = parsed.to_seed(BIP39_PASSPHRASE);
        assert_eq!(derived.as_bytes(), unhex(seed).as_slice(), "{mnemonic}");
        let master = ExtendedPrivateKey::master(&derived).unwrap();
        assert_eq!(*master.to_xprv(), *xprv, "{mnemonic}");
        ran += 1;
    }
    assert_eq!(ran, 8);
}

#[test]
fn bip39_12_and_18_word_vectors_are_refused_but_their_seeds_derive() {
    let vectors: Bip39Vectors = json("bip39/vectors.json");
    let mut ran = 0;
    for [_, mnemonic, seed, xprv] in &vectors.english {
        let found = mnemonic.split(' ').count();
        if found == phrase::WORDS {
            continue;
        }
        assert!(found == 12 || found == 18, "{found} words");
        assert_eq!(
            RecoveryPhrase::parse(mnemonic).unwrap_err(),
            PhraseError::WordCount { found, expected: phrase::WORDS }
        );
        let seed = Seed::from_bytes(&unhex(seed)).unwrap();
        let master = ExtendedPrivateKey::master(&seed).unwrap();
        assert_eq!(*master.to_xprv(), *xprv, "{mnemonic}");
        ran += 1;
    }
    assert_eq!(ran, 16);
    assert_eq!(vectors.english.len(), 24);
}

/// Packs 11-bit word indices into 32 bytes of entropy, most significant bit first.
fn entropy_of_indices(indices: &[u16]) -> [u8; phrase::ENTROPY_BYTES] {
    let mut entropy = [0u8; phrase::ENTROPY_BYTES];
    let mut bit = 0;
    for &index in indices {
        for shift in (0..11).rev() {
            if bit < 8 * phrase::ENTROPY_BYTES && (index >> shift) & 1 == 1 {
                entropy[bit / 8] |= 0x80 >> (bit % 8);
            }
            bit += 1;
        }
    }
    entropy
}

#[test]
fn bip39_english_word_list_is_the_one_phrases_use() {
    let list: Vec<String> = read("bip39/english.txt").lines().map(str::to_owned).collect();
    assert_eq!(list.len(), 2048);
    // 23 words of a phrase come from its entropy alone (the 24th mixes in the
    // checksum): cover every index of the list, 23 at a time.
    let mut seen = vec![false; list.len()];
    let mut phrases = 0;
    for first in (0..list.len()).step_by(23) {
        let indices: Vec<u16> =
            (0..23).map(|j| u16::try_from((first + j) % list.len()).unwrap()).collect();
        let phrase = RecoveryPhrase::from_entropy(&entropy_of_indices(&indices));
        let words = phrase.to_words();
        let words: Vec<&str> = words.split(' ').collect();
        for (word, &index) in words.iter().zip(&indices) {
            assert_eq!(*word, list[usize::from(index)]);
            seen[usize::from(index)] = true;
        }
        let parsed = RecoveryPhrase::parse(&words.join(" ")).unwrap();
        assert_eq!(*parsed.entropy(), *phrase.entropy());
        phrases += 1;
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(phrases, 2048usize.div_ceil(23));
}

// --- BIP32 ----------------------------------------------------------------------

#[derive(Deserialize)]
struct Bip32Vectors {
    valid: Vec<Bip32Vector>,
    invalid: Vec<Bip32Invalid>,
}

#[derive(Deserialize)]
struct Bip32Vector {
    vector: u32,
    seed: String,
    chains: Vec<Bip32Chain>,
}

#[derive(Deserialize)]
struct Bip32Chain {
    path: String,
    xpub: String,
    xprv: String,
}

#[derive(Deserialize)]
struct Bip32Invalid {
    key: String,
    reason: String,
}

#[test]
fn bip32_vectors_1_to_4_derive_every_chain() {
    let vectors: Bip32Vectors = json("bip32/bip32-test-vectors.derived.json");
    let mut chains = 0;
    for vector in &vectors.valid {
        let seed = Seed::from_bytes(&unhex(&vector.seed)).unwrap();
        let master = ExtendedPrivateKey::master(&seed).unwrap();
        for chain in &vector.chains {
            let key = master.derive(&chain.path).unwrap();
            let context = format!("vector {} {}", vector.vector, chain.path);
            assert_eq!(*key.to_xprv(), chain.xprv, "{context}");
            assert_eq!(key.to_xpub(), chain.xpub, "{context}");
            assert_eq!(key.public_key().to_xpub(), chain.xpub, "{context}");
            // Both serializations parse back to the same key.
            let reparsed = ExtendedPrivateKey::from_xprv(&chain.xprv).unwrap();
            assert_eq!(*reparsed.to_xprv(), chain.xprv, "{context}");
            assert_eq!(*reparsed.secret_bytes(), *key.secret_bytes(), "{context}");
            let public = ExtendedPublicKey::from_xpub(&chain.xpub).unwrap();
            assert_eq!(public, key.public_key(), "{context}");
            assert_eq!(public.to_xpub(), chain.xpub, "{context}");
            chains += 1;
        }
    }
    assert_eq!(vectors.valid.iter().map(|v| v.vector).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(chains, 6 + 6 + 2 + 3);
}

#[test]
fn bip32_vector_5_invalid_keys_are_refused() {
    let vectors: Bip32Vectors = json("bip32/bip32-test-vectors.derived.json");
    for invalid in &vectors.invalid {
        assert!(
            ExtendedPrivateKey::from_xprv(&invalid.key).is_err(),
            "accepted as xprv: {}",
            invalid.reason
        );
        assert!(
            ExtendedPublicKey::from_xpub(&invalid.key).is_err(),
            "accepted as xpub: {}",
            invalid.reason
        );
    }
    assert_eq!(vectors.invalid.len(), 16);
}

#[test]
fn bip32_derived_vectors_match_the_bip_text() {
    let vectors: Bip32Vectors = json("bip32/bip32-test-vectors.derived.json");
    let bip = read("bip32/bip-0032.mediawiki");
    let keys_in_bip = bip
        .lines()
        .filter(|l| l.starts_with("** ext pub: ") || l.starts_with("** ext prv: "))
        .count();
    let mut keys = 0;
    for vector in &vectors.valid {
        assert!(bip.contains(&format!("Seed (hex): {}", vector.seed)));
        for chain in &vector.chains {
            assert!(bip.contains(&format!("** ext pub: {}", chain.xpub)));
            assert!(bip.contains(&format!("** ext prv: {}", chain.xprv)));
            keys += 2;
        }
    }
    for invalid in &vectors.invalid {
        assert!(bip.contains(&invalid.key), "{}", invalid.reason);
    }
    assert_eq!(keys, keys_in_bip);
}

// --- BIP340 ---------------------------------------------------------------------

#[test]
fn bip340_vectors_sign_and_verify_through_signature() {
    let csv = read("bip340/test-vectors.csv");
    let mut rows = 0;
    let mut signed = 0;
    for line in csv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.trim_end().splitn(8, ',').collect();
        let [index, secret, public, aux, message, signature, result, comment] = fields[..] else {
            panic!("malformed row {line}");
        };
        let message = unhex(message);
        let signature = Signature::from_bytes(array(signature));
        let expected = match result {
            "TRUE" => true,
            "FALSE" => false,
            other => panic!("row {index}: result {other}"),
        };
        if !secret.is_empty() {
            let key = SigningKey::from_bytes(&array(secret)).unwrap();
            assert_eq!(key.verifying_key().to_bytes(), array::<32>(public), "row {index}");
            let made = key.sign_with_aux(&message, &array(aux));
            assert_eq!(made, signature, "row {index}");
            signed += 1;
        }
        // A key that does not parse can verify nothing.
        let verified = VerifyingKey::from_bytes(&array(public))
            .map(|key| key.verify_raw(&message, &signature).is_ok())
            .unwrap_or(false);
        assert_eq!(verified, expected, "row {index}: {comment}");
        rows += 1;
    }
    assert_eq!(rows, 19);
    assert_eq!(signed, 8);
}

// --- RFC 5869 HKDF-SHA256 -------------------------------------------------------

#[test]
fn rfc5869_hkdf_sha256_vectors_through_kdf() {
    let text = read("rfc/rfc-5869-HKDF-SHA256.txt");
    let mut cases = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("COUNT") && !current.is_empty() {
            cases.push(std::mem::take(&mut current));
        }
        if let Some((name, value)) = line.split_once('=') {
            current.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    cases.push(current);
    let mut ran = 0;
    for case in &cases {
        let field = |name: &str| {
            case.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("missing {name}"))
        };
        assert_eq!(field("Hash"), "SHA-256");
        let len: usize = field("L").parse().unwrap();
        let mut okm = vec![0u8; len];
        kdf::hkdf_sha256(
            &unhex(&field("salt")),
            &unhex(&field("IKM")),
            &[&unhex(&field("info"))],
            &mut okm,
        )
        .unwrap();
        assert_eq!(okm, unhex(&field("OKM")), "case {}", field("COUNT"));
        ran += 1;
    }
    assert_eq!(ran, 3);
}

// --- RFC 8439 ChaCha20-Poly1305 -------------------------------------------------

#[derive(Deserialize)]
struct Rfc8439Vectors {
    aead: Vec<Rfc8439Aead>,
    chacha20_encrypt: Vec<Rfc8439Keystream>,
}

#[derive(Deserialize)]
struct Rfc8439Aead {
    name: String,
    key: String,
    nonce: String,
    aad: String,
    plaintext: String,
    ciphertext: String,
    tag: String,
    result: String,
}

#[derive(Deserialize)]
struct Rfc8439Keystream {
    name: String,
    key: String,
    nonce: String,
    counter: u32,
    plaintext: String,
    ciphertext: String,
}

fn chacha(key: &str) -> Key {
    Key::with_algorithm(Algorithm::ChaCha20Poly1305, &array(key))
}

#[test]
fn rfc8439_chacha20_poly1305_vectors_seal_and_open_and_tampering_fails() {
    let vectors: Rfc8439Vectors = json("rfc/rfc8439-vectors.derived.json");
    let mut ran = 0;
    for case in &vectors.aead {
        assert_eq!(case.result, "valid");
        let key = chacha(&case.key);
        let nonce = array::<{ aead::NONCE_BYTES }>(&case.nonce);
        let aad = unhex(&case.aad);
        let sealed = [unhex(&case.ciphertext), unhex(&case.tag)].concat();

        let mut buffer = unhex(&case.plaintext);
        key.seal(&nonce, &aad, &mut buffer);
        assert_eq!(buffer, sealed, "{}", case.name);

        let mut buffer = sealed.clone();
        let opened = key.open(&nonce, &aad, &mut buffer).unwrap();
        assert_eq!(opened, unhex(&case.plaintext).as_slice(), "{}", case.name);

        // Invalid cases: every flipped bit of ciphertext or tag, a changed
        // associated data byte or nonce, must fail to open.
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1 << (i % 8);
            assert!(key.open(&nonce, &aad, &mut tampered).is_err(), "{} byte {i}", case.name);
        }
        for i in 0..aad.len() {
            let mut other = aad.clone();
            other[i] ^= 0x80;
            assert!(key.open(&nonce, &other, &mut sealed.clone()).is_err());
        }
        let mut other_nonce = nonce;
        other_nonce[0] ^= 1;
        assert!(key.open(&other_nonce, &aad, &mut sealed.clone()).is_err());
        assert!(key.open(&nonce, &aad, &mut sealed[..aead::TAG_BYTES - 1].to_vec()).is_err());
        ran += 1;
    }
    assert_eq!(ran, 2);
}

#[test]
fn rfc8439_chacha20_keystream_vectors_through_the_aead() {
    // The AEAD encrypts with block counter 1 onwards (block 0 makes the
    // Poly1305 key), so a keystream vector at counter `c >= 1` is the AEAD
    // ciphertext of its plaintext preceded by `c - 1` blocks of zeros. The
    // counter-0 vector (A.2 #1) cannot be observed through an AEAD.
    const BLOCK_BYTES: usize = 64;
    let vectors: Rfc8439Vectors = json("rfc/rfc8439-vectors.derived.json");
    let mut ran = 0;
    for case in &vectors.chacha20_encrypt {
        let Some(skip) = (case.counter as usize).checked_sub(1) else {
            assert_eq!(case.name, "RFC 8439 A.2 #1");
            continue;
        };
        let skip = skip * BLOCK_BYTES;
        let key = chacha(&case.key);
        let nonce = array::<{ aead::NONCE_BYTES }>(&case.nonce);
        let mut buffer = vec![0u8; skip];
        buffer.extend_from_slice(&unhex(&case.plaintext));
        key.seal_detached(&nonce, &[], &mut buffer);
        assert_eq!(buffer[skip..], unhex(&case.ciphertext), "{}", case.name);
        ran += 1;
    }
    assert_eq!(ran, 2);
    assert_eq!(vectors.chacha20_encrypt.len(), 3);
}

// --- Wycheproof AES-256-GCM -----------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WycheproofFile {
    algorithm: String,
    number_of_tests: usize,
    test_groups: Vec<WycheproofGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WycheproofGroup {
    iv_size: usize,
    key_size: usize,
    tag_size: usize,
    tests: Vec<WycheproofTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WycheproofTest {
    tc_id: u32,
    comment: String,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: String,
}

#[test]
fn wycheproof_aes_256_gcm_vectors_seal_and_open_through_aead() {
    let file: WycheproofFile = json("wycheproof/aes_gcm_test.subset.json");
    assert_eq!(file.algorithm, "AES-GCM");
    let (mut valid, mut invalid) = (0, 0);
    for group in &file.test_groups {
        assert_eq!((group.key_size, group.iv_size, group.tag_size), (256, 96, 128));
        for test in &group.tests {
            let context = format!("tcId {} {}", test.tc_id, test.comment);
            let key = Key::new(&array(&test.key));
            let nonce = array::<{ aead::NONCE_BYTES }>(&test.iv);
            let aad = unhex(&test.aad);
            let sealed = [unhex(&test.ct), unhex(&test.tag)].concat();
            let mut buffer = sealed.clone();
            let opened = key.open(&nonce, &aad, &mut buffer).map(|p| p.to_vec());
            match test.result.as_str() {
                "valid" => {
                    assert_eq!(opened.as_deref(), Ok(unhex(&test.msg).as_slice()), "{context}");
                    let mut buffer = unhex(&test.msg);
                    key.seal(&nonce, &aad, &mut buffer);
                    assert_eq!(buffer, sealed, "{context}");
                    let mut detached = unhex(&test.msg);
                    let tag = key.seal_detached(&nonce, &aad, &mut detached);
                    assert_eq!((detached, tag.to_vec()), (unhex(&test.ct), unhex(&test.tag)));
                    valid += 1;
                }
                "invalid" => {
                    assert_eq!(opened, Err(aead::OpenError), "{context}");
                    invalid += 1;
                }
                other => panic!("{context}: unexpected result {other}"),
            }
        }
    }
    assert_eq!((valid, invalid), (21, 27));
    assert_eq!(valid + invalid, file.number_of_tests);
}
