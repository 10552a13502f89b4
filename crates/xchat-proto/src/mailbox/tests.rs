use prost::Message;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;

const NOW_MS: u64 = 1_790_000_000_000;
/// Cheap enough for tests: about 256 hashes per stamp.
const DIFFICULTY: u8 = 8;

/// A change to one field of a generated request.
type Tamper<T> = Box<dyn Fn(&mut T)>;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

fn mailbox(rng: &mut ChaCha20Rng) -> SigningKey {
    SigningKey::generate(rng)
}

fn decode(request: &Request) -> UnverifiedRequest {
    let bytes = request.encode();
    assert!(bytes.len() <= MAX_REQUEST_BYTES);
    UnverifiedRequest::decode(&bytes).unwrap()
}

fn store(rng: &mut ChaCha20Rng) -> StoreRequest {
    let key = mailbox(rng).verifying_key();
    StoreRequest::new(key, vec![5; 500], 3600, DIFFICULTY).unwrap()
}

fn raw_store(store: &StoreRequest) -> pb::StoreRequest {
    store.to_proto()
}

fn decode_raw_store(raw: pb::StoreRequest) -> Result<UnverifiedRequest, ProtoError> {
    let request = pb::MailboxRequest { request: Some(pb::mailbox_request::Request::Store(raw)) };
    UnverifiedRequest::decode(&request.encode_to_vec())
}

fn unverified_store(raw: pb::StoreRequest) -> UnverifiedStoreRequest {
    match decode_raw_store(raw).unwrap() {
        UnverifiedRequest::Store(store) => store,
        other => panic!("not a store: {other:?}"),
    }
}

#[test]
fn store_request_round_trips_and_its_stamp_holds() {
    let mut rng = rng();
    let request = store(&mut rng);
    assert!(request.stamp().difficulty_bits() == DIFFICULTY);
    assert_eq!(request.item_id(), ItemId::of_envelope(request.envelope()));
    let UnverifiedRequest::Store(decoded) = decode(&Request::Store(request.clone())) else {
        panic!("not a store");
    };
    assert_eq!(decoded.mailbox_key(), request.mailbox_key());
    assert_eq!(decoded.verify(DIFFICULTY).unwrap(), request);
}

#[test]
fn store_request_refuses_less_work_than_the_node_asks() {
    let request = store(&mut rng());
    assert_eq!(
        unverified_store(raw_store(&request)).verify(DIFFICULTY + 1),
        Err(VerifyError::InsufficientWork { claimed_bits: DIFFICULTY, min_bits: DIFFICULTY + 1 })
    );
}

#[test]
fn stamp_covers_envelope_ttl_key_and_difficulty() {
    let mut rng = rng();
    let request = store(&mut rng);
    let other_key = mailbox(&mut rng).verifying_key().to_bytes().to_vec();
    let tampered: Vec<Tamper<pb::StoreRequest>> = vec![
        Box::new(|raw| raw.envelope[0] ^= 1),
        Box::new(|raw| raw.ttl_seconds += 1),
        Box::new(move |raw| raw.mailbox_key.clone_from(&other_key)),
        Box::new(|raw| raw.stamp.as_mut().unwrap().difficulty_bits += 1),
        Box::new(|raw| raw.stamp.as_mut().unwrap().nonce += 1),
    ];
    let mut refused = 0;
    for tamper in tampered {
        let mut raw = raw_store(&request);
        tamper(&mut raw);
        // A changed input hashes anew: it holds again with probability 2^-8.
        if unverified_store(raw).verify(0) == Err(VerifyError::InvalidStamp) {
            refused += 1;
        }
    }
    assert!(refused >= 4, "only {refused} of 5 tamperings refused");
}

#[test]
fn store_request_refuses_each_invalid_field() {
    let request = store(&mut rng());
    let change = |f: &dyn Fn(&mut pb::StoreRequest)| {
        let mut raw = raw_store(&request);
        f(&mut raw);
        decode_raw_store(raw).unwrap_err()
    };
    assert_eq!(
        change(&|raw| raw.mailbox_key = vec![0xff; 32]),
        ProtoError::InvalidKey { field: "StoreRequest.mailbox_key" }
    );
    assert_eq!(
        change(&|raw| raw.mailbox_key.clear()),
        ProtoError::MissingField { field: "StoreRequest.mailbox_key" }
    );
    assert_eq!(
        change(&|raw| raw.envelope.clear()),
        ProtoError::MissingField { field: "StoreRequest.envelope" }
    );
    for ttl in [0, MAX_TTL_SECONDS + 1] {
        assert_eq!(
            change(&|raw| raw.ttl_seconds = ttl),
            ProtoError::OutOfRange {
                field: "StoreRequest.ttl_seconds",
                value: ttl.into(),
                min: 1,
                max: MAX_TTL_SECONDS.into()
            }
        );
    }
    assert_eq!(
        change(&|raw| raw.stamp = None),
        ProtoError::MissingField { field: "StoreRequest.stamp" }
    );
    assert_eq!(
        change(&|raw| raw.stamp.as_mut().unwrap().difficulty_bits = 65),
        ProtoError::OutOfRange { field: "Stamp.difficulty_bits", value: 65, min: 0, max: 64 }
    );
    assert_eq!(
        change(&|raw| raw.stamp.as_mut().unwrap().difficulty_bits = u32::MAX),
        ProtoError::OutOfRange {
            field: "Stamp.difficulty_bits",
            value: u32::MAX.into(),
            min: 0,
            max: 64
        }
    );
    let key = *request.mailbox_key();
    assert!(matches!(
        StoreRequest::new(key, vec![0; MAX_ENVELOPE_BYTES + 1], 60, 0),
        Err(ProtoError::LengthOutOfRange { field: "StoreRequest.envelope", .. })
    ));
    assert!(matches!(
        StoreRequest::new(key, vec![1], 60, MAX_STAMP_DIFFICULTY_BITS + 1),
        Err(ProtoError::OutOfRange { field: "Stamp.difficulty_bits", .. })
    ));
}

#[test]
fn largest_store_request_fits_the_limit() {
    let key = mailbox(&mut rng()).verifying_key();
    let request =
        StoreRequest::new(key, vec![0xff; MAX_ENVELOPE_BYTES], MAX_TTL_SECONDS, 0).unwrap();
    let mut raw = raw_store(&request);
    raw.stamp = Some(pb::Stamp { nonce: u64::MAX, difficulty_bits: 64 });
    let bytes = pb::MailboxRequest { request: Some(pb::mailbox_request::Request::Store(raw)) }
        .encode_to_vec();
    assert!(bytes.len() <= MAX_REQUEST_BYTES - crate::HEADROOM_BYTES + 64, "{}", bytes.len());
    assert!(UnverifiedRequest::decode(&bytes).is_ok());
}

#[test]
fn fetch_request_round_trips_and_verifies() {
    let mut rng = rng();
    let owner = mailbox(&mut rng);
    let request = FetchRequest::new(&owner, NOW_MS, &mut rng);
    let UnverifiedRequest::Fetch(decoded) = decode(&Request::Fetch(request.clone())) else {
        panic!("not a fetch");
    };
    assert_eq!(decoded.mailbox_key(), &owner.verifying_key());
    let verified = decoded.verify(NOW_MS + MAX_REQUEST_SKEW_MS).unwrap();
    assert_eq!(verified, request);
    assert_eq!(verified.timestamp_ms(), NOW_MS);
    assert_ne!(verified.nonce(), FetchRequest::new(&owner, NOW_MS, &mut rng).nonce());
}

fn unverified_fetch(request: &FetchRequest) -> UnverifiedFetchRequest {
    match decode(&Request::Fetch(request.clone())) {
        UnverifiedRequest::Fetch(fetch) => fetch,
        other => panic!("not a fetch: {other:?}"),
    }
}

#[test]
fn fetch_request_refuses_stale_timestamps_either_way() {
    let mut rng = rng();
    let request = FetchRequest::new(&mailbox(&mut rng), NOW_MS, &mut rng);
    let skew_ms = MAX_REQUEST_SKEW_MS + 1;
    assert_eq!(
        unverified_fetch(&request).verify(NOW_MS + skew_ms),
        Err(VerifyError::Stale { skew_ms })
    );
    assert_eq!(
        unverified_fetch(&request).verify(NOW_MS - skew_ms),
        Err(VerifyError::Stale { skew_ms })
    );
}

#[test]
fn fetch_signature_covers_timestamp_nonce_and_key() {
    let mut rng = rng();
    let request = FetchRequest::new(&mailbox(&mut rng), NOW_MS, &mut rng);
    let other_key = mailbox(&mut rng).verifying_key().to_bytes().to_vec();
    let bytes = Request::Fetch(request).encode();
    let raw = pb::MailboxRequest::decode(bytes.as_slice()).unwrap();
    let tampered: Vec<Tamper<pb::FetchRequest>> = vec![
        Box::new(|fetch| fetch.timestamp_ms += 1),
        Box::new(|fetch| fetch.nonce[0] ^= 1),
        Box::new(move |fetch| fetch.mailbox_key.clone_from(&other_key)),
        Box::new(|fetch| fetch.signature[10] ^= 1),
    ];
    for tamper in tampered {
        let mut raw = raw.clone();
        let Some(pb::mailbox_request::Request::Fetch(fetch)) = &mut raw.request else {
            panic!("not a fetch");
        };
        tamper(fetch);
        let Ok(UnverifiedRequest::Fetch(fetch)) = UnverifiedRequest::decode(&raw.encode_to_vec())
        else {
            panic!("tampered fetch does not decode");
        };
        assert_eq!(fetch.verify(NOW_MS), Err(VerifyError::InvalidSignature));
    }
}

#[test]
fn fetch_request_refuses_each_invalid_field() {
    let mut rng = rng();
    let request = FetchRequest::new(&mailbox(&mut rng), NOW_MS, &mut rng);
    let raw = pb::MailboxRequest::decode(Request::Fetch(request).encode().as_slice()).unwrap();
    let change = |f: &dyn Fn(&mut pb::FetchRequest)| {
        let mut raw = raw.clone();
        if let Some(pb::mailbox_request::Request::Fetch(fetch)) = &mut raw.request {
            f(fetch);
        }
        UnverifiedRequest::decode(&raw.encode_to_vec()).unwrap_err()
    };
    assert_eq!(
        change(&|f| f.nonce.truncate(15)),
        ProtoError::WrongLength { field: "FetchRequest.nonce", len: 15, expected: 16 }
    );
    assert_eq!(
        change(&|f| f.signature.clear()),
        ProtoError::MissingField { field: "FetchRequest.signature" }
    );
    assert_eq!(
        change(&|f| f.mailbox_key.push(0)),
        ProtoError::WrongLength { field: "FetchRequest.mailbox_key", len: 33, expected: 32 }
    );
    assert_eq!(
        UnverifiedRequest::decode(&[]),
        Err(ProtoError::MissingField { field: "MailboxRequest.request" })
    );
}

fn item_ids(count: usize) -> Vec<ItemId> {
    (0..count).map(|i| ItemId::of_envelope(&i.to_be_bytes())).collect()
}

#[test]
fn delete_request_round_trips_and_its_signature_covers_the_ids() {
    let mut rng = rng();
    let owner = mailbox(&mut rng);
    let request = DeleteRequest::new(&owner, NOW_MS, item_ids(3), &mut rng).unwrap();
    let UnverifiedRequest::Delete(decoded) = decode(&Request::Delete(request.clone())) else {
        panic!("not a delete");
    };
    assert_eq!(decoded.mailbox_key(), &owner.verifying_key());
    let verified = decoded.verify(NOW_MS).unwrap();
    assert_eq!(verified, request);
    assert_eq!(verified.item_ids(), item_ids(3).as_slice());

    let mut raw = pb::MailboxRequest::decode(Request::Delete(request).encode().as_slice()).unwrap();
    if let Some(pb::mailbox_request::Request::Delete(delete)) = &mut raw.request {
        delete.item_ids.swap(0, 1);
    }
    let Ok(UnverifiedRequest::Delete(reordered)) = UnverifiedRequest::decode(&raw.encode_to_vec())
    else {
        panic!("reordered delete does not decode");
    };
    assert_eq!(reordered.verify(NOW_MS), Err(VerifyError::InvalidSignature));
}

#[test]
fn a_fetch_signature_does_not_authorise_a_delete() {
    let mut rng = rng();
    let fetch = FetchRequest::new(&mailbox(&mut rng), NOW_MS, &mut rng).0;
    // The delete's signed message with no ids differs from the fetch's by its
    // count, and the contexts differ: both keep the signature from verifying.
    let forged = UnverifiedDeleteRequest(DeleteRequest { signed: fetch, item_ids: vec![] });
    assert_eq!(forged.verify(NOW_MS), Err(VerifyError::InvalidSignature));
}

#[test]
fn delete_request_refuses_bad_id_lists() {
    let mut rng = rng();
    let owner = mailbox(&mut rng);
    assert_eq!(
        DeleteRequest::new(&owner, NOW_MS, vec![], &mut rng),
        Err(ProtoError::MissingField { field: "DeleteRequest.item_ids" })
    );
    assert_eq!(
        DeleteRequest::new(&owner, NOW_MS, item_ids(MAX_DELETE_ITEMS + 1), &mut rng),
        Err(ProtoError::TooMany {
            field: "DeleteRequest.item_ids",
            count: MAX_DELETE_ITEMS + 1,
            max: MAX_DELETE_ITEMS
        })
    );
    let full = DeleteRequest::new(&owner, NOW_MS, item_ids(MAX_DELETE_ITEMS), &mut rng).unwrap();
    let raw = pb::MailboxRequest::decode(Request::Delete(full).encode().as_slice()).unwrap();
    let change = |f: &dyn Fn(&mut pb::DeleteRequest)| {
        let mut raw = raw.clone();
        if let Some(pb::mailbox_request::Request::Delete(delete)) = &mut raw.request {
            f(delete);
        }
        UnverifiedRequest::decode(&raw.encode_to_vec()).unwrap_err()
    };
    assert_eq!(
        change(&|d| d.item_ids.push(vec![0; ITEM_ID_BYTES])),
        ProtoError::TooMany {
            field: "DeleteRequest.item_ids",
            count: MAX_DELETE_ITEMS + 1,
            max: MAX_DELETE_ITEMS
        }
    );
    assert_eq!(
        change(&|d| d.item_ids.clear()),
        ProtoError::MissingField { field: "DeleteRequest.item_ids" }
    );
    assert_eq!(
        change(&|d| d.item_ids[7].truncate(31)),
        ProtoError::WrongLength { field: "DeleteRequest.item_ids", len: 31, expected: 32 }
    );
}

#[test]
fn every_response_round_trips() {
    let mut page = Fetched::new();
    page.push(Item::new(NOW_MS, vec![1; 400]).unwrap()).unwrap();
    page.push(Item::new(0, vec![2; 1]).unwrap()).unwrap();
    page.set_more(true);
    let responses = [
        Response::Stored(ItemId::of_envelope(b"x")),
        Response::Fetched(page),
        Response::Fetched(Fetched::new()),
        Response::Deleted { count: 3 },
        Response::Deleted { count: 0 },
        Response::Refused(ErrorCode::RateLimited),
    ];
    for response in responses {
        let bytes = response.encode();
        assert_eq!(Response::decode(&bytes).unwrap(), response);
    }
}

#[test]
fn error_codes_keep_their_numbers() {
    let codes = [
        (ErrorCode::Malformed, 1),
        (ErrorCode::TooLarge, 2),
        (ErrorCode::InvalidSignature, 3),
        (ErrorCode::Stale, 4),
        (ErrorCode::Replayed, 5),
        (ErrorCode::InsufficientWork { required_bits: None }, 6),
        (ErrorCode::InsufficientWork { required_bits: Some(20) }, 6),
        (ErrorCode::MailboxFull, 7),
        (ErrorCode::RateLimited, 8),
        (ErrorCode::NotResponsible, 9),
        (ErrorCode::Internal, 10),
    ];
    for (code, number) in codes {
        assert_eq!(code.number(), number);
        assert_eq!(
            Response::decode(&Response::Refused(code).encode()),
            Ok(Response::Refused(code))
        );
    }
    assert_eq!(
        ErrorCode::from(&VerifyError::InvalidStamp),
        ErrorCode::InsufficientWork { required_bits: None }
    );
    assert_eq!(
        ErrorCode::from(&VerifyError::InsufficientWork { claimed_bits: 16, min_bits: 19 }),
        ErrorCode::InsufficientWork { required_bits: Some(19) }
    );
    assert_eq!(ErrorCode::from(&VerifyError::Stale { skew_ms: 1 }), ErrorCode::Stale);
    assert_eq!(
        ErrorCode::from(&ProtoError::TooLarge { message: "MailboxRequest", len: 2, max: 1 }),
        ErrorCode::TooLarge
    );
    assert_eq!(
        ErrorCode::from(&ProtoError::MissingField { field: "StoreRequest.stamp" }),
        ErrorCode::Malformed
    );
}

#[test]
fn response_refuses_each_invalid_field() {
    use pb::mailbox_response::Result as R;
    let decode_result = |result: Option<R>| {
        Response::decode(&pb::MailboxResponse { result }.encode_to_vec()).unwrap_err()
    };
    assert_eq!(decode_result(None), ProtoError::MissingField { field: "MailboxResponse.result" });
    for code in [0, 11, -3] {
        assert_eq!(
            decode_result(Some(R::Refused(pb::Refused { code, required_difficulty_bits: 0 }))),
            ProtoError::UnknownEnumValue { field: "Refused.code", value: code }
        );
    }
    assert_eq!(
        decode_result(Some(R::Stored(pb::Stored { item_id: vec![1; 16] }))),
        ProtoError::WrongLength { field: "Stored.item_id", len: 16, expected: 32 }
    );
    let item = |id: Vec<u8>, envelope: Vec<u8>| pb::Item { id, stored_at_ms: 1, envelope };
    assert_eq!(
        decode_result(Some(R::Fetched(pb::Fetched {
            items: vec![item(vec![1; 32], vec![1]); MAX_FETCH_ITEMS + 1],
            more: true,
        }))),
        ProtoError::TooMany {
            field: "Fetched.items",
            count: MAX_FETCH_ITEMS + 1,
            max: MAX_FETCH_ITEMS
        }
    );
    assert_eq!(
        decode_result(Some(R::Fetched(pb::Fetched {
            items: vec![item(vec![], vec![1])],
            more: false
        }))),
        ProtoError::MissingField { field: "Item.id" }
    );
    assert_eq!(
        decode_result(Some(R::Fetched(pb::Fetched {
            items: vec![item(vec![1; 32], vec![])],
            more: false
        }))),
        ProtoError::MissingField { field: "Item.envelope" }
    );
    let bytes = vec![0u8; MAX_RESPONSE_BYTES + 1];
    assert!(matches!(Response::decode(&bytes), Err(ProtoError::TooLarge { .. })));
}

#[test]
fn refusal_asking_more_work_than_any_node_may_ask_is_refused() {
    use pb::mailbox_response::Result as R;
    let refused = |code: pb::ErrorCode, required_difficulty_bits: u32| {
        let refused = pb::Refused { code: code.into(), required_difficulty_bits };
        Response::decode(&pb::MailboxResponse { result: Some(R::Refused(refused)) }.encode_to_vec())
    };
    let max = MAX_DEMANDED_DIFFICULTY_BITS;
    assert_eq!(
        refused(pb::ErrorCode::InsufficientWork, max.into()),
        Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(max) }))
    );
    // A node that does not say (an older one) is still understood.
    assert_eq!(
        refused(pb::ErrorCode::InsufficientWork, 0),
        Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: None }))
    );
    for absurd in [u32::from(max) + 1, u32::from(MAX_STAMP_DIFFICULTY_BITS), 256, u32::MAX] {
        assert_eq!(
            refused(pb::ErrorCode::InsufficientWork, absurd),
            Err(ProtoError::OutOfRange {
                field: "Refused.required_difficulty_bits",
                value: absurd.into(),
                min: 0,
                max: max.into(),
            })
        );
    }
    // A difficulty only goes with INSUFFICIENT_WORK.
    assert!(matches!(
        refused(pb::ErrorCode::RateLimited, 20),
        Err(ProtoError::Invalid { field: "Refused.required_difficulty_bits", .. })
    ));
}

#[test]
fn difficulty_past_the_limit_is_never_encoded() {
    // A refusal a node builds by hand past the limit is sent as "not said",
    // so every response a node encodes decodes.
    let response = Response::Refused(ErrorCode::InsufficientWork {
        required_bits: Some(MAX_DEMANDED_DIFFICULTY_BITS + 1),
    });
    assert_eq!(
        Response::decode(&response.encode()),
        Ok(Response::Refused(ErrorCode::InsufficientWork { required_bits: None }))
    );
}

#[test]
fn restamped_request_holds_at_the_new_difficulty() {
    let request = store(&mut rng());
    let item = request.item_id();
    let restamped = request.restamp(DIFFICULTY + 2).unwrap();
    assert_eq!((restamped.item_id(), restamped.stamp().difficulty_bits()), (item, DIFFICULTY + 2));
    let UnverifiedRequest::Store(decoded) = decode(&Request::Store(restamped.clone())) else {
        panic!("not a store");
    };
    assert_eq!(decoded.verify(DIFFICULTY + 2), Ok(restamped));
}

#[test]
fn fetched_page_stays_within_its_item_and_byte_limits() {
    // Many small items: the count binds.
    let mut page = Fetched::new();
    for i in 0..MAX_FETCH_ITEMS {
        page.push(Item::new(NOW_MS, vec![1; 10 + i]).unwrap()).unwrap();
    }
    assert!(page.push(Item::new(NOW_MS, vec![1; 10]).unwrap()).is_err());
    let response = Response::Fetched(page.clone());
    assert_eq!(
        response.encode().len(),
        page.items_len + 1 + decode::varint_len(page.items_len as u64)
    );

    // Large items: the bytes bind, and the response still decodes.
    let mut page = Fetched::new();
    let mut pushed = 0;
    while page.push(Item::new(u64::MAX, vec![0xff; MAX_ENVELOPE_BYTES]).unwrap()).is_ok() {
        pushed += 1;
    }
    page.set_more(true);
    assert_eq!(pushed, MAX_RESPONSE_BYTES / (MAX_ENVELOPE_BYTES + 60));
    let bytes = Response::Fetched(page.clone()).encode();
    assert!(bytes.len() <= MAX_RESPONSE_BYTES);
    assert_eq!(Response::decode(&bytes), Ok(Response::Fetched(page)));
}

#[test]
fn leading_zero_bits_counts_from_the_first_byte() {
    let mut hash = [0u8; 32];
    assert_eq!(leading_zero_bits(&hash), 256);
    hash[0] = 0x80;
    assert_eq!(leading_zero_bits(&hash), 0);
    hash[0] = 0;
    hash[1] = 0x10;
    assert_eq!(leading_zero_bits(&hash), 11);
    hash[2] = 0xff;
    assert_eq!(leading_zero_bits(&hash), 11);
}

#[test]
fn stamp_of_zero_difficulty_always_holds_and_minting_finds_the_first_nonce() {
    let key = mailbox(&mut rng()).verifying_key();
    let item = ItemId::of_envelope(b"envelope");
    assert_eq!(Stamp::mint(&key, &item, 60, 0).unwrap().nonce(), 0);
    let stamp = Stamp::mint(&key, &item, 60, 12).unwrap();
    assert!(stamp.holds(&key, &item, 60));
    assert!(
        (0..stamp.nonce())
            .all(|nonce| !Stamp { nonce, difficulty_bits: 12 }.holds(&key, &item, 60))
    );
}
