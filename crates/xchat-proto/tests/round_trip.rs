//! Property tests through the public API: every validated type encodes and
//! decodes back to itself, and encoding is deterministic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::file::{FileDigest, FileKey, MAX_FILE_BYTES};
use xchat_crypto::signature::SigningKey;
use xchat_proto::content::{
    Body, CallId, CallSignal, Content, FileDescriptor, FileId, FileName, HangUpReason,
    IceCandidate, MAX_FILE_NAME_BYTES, MAX_VANISHING_TIMER_SECS, MIN_VANISHING_TIMER_SECS,
    MediaType, MessageId, Receipt, ReceiptKind, RejectReason, Sdp, Signal, Text, Typing,
    VanishingTimer,
};
use xchat_proto::envelope::{
    DeviceMessage, Envelope, MAX_INITIATION_BYTES, MAX_SEALED_BYTES, MIN_INITIATION_BYTES,
    MIN_SEALED_BYTES,
};
use xchat_proto::mailbox::{
    DeleteRequest, ErrorCode, FetchRequest, Fetched, Item, ItemId, MAX_DEMANDED_DIFFICULTY_BITS,
    Request, Response, StoreRequest, UnverifiedRequest,
};

fn timer() -> impl Strategy<Value = VanishingTimer> {
    prop_oneof![Just(0), MIN_VANISHING_TIMER_SECS..=MAX_VANISHING_TIMER_SECS]
        .prop_map(|secs| VanishingTimer::from_secs(secs).unwrap())
}

fn message_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(MessageId::from_bytes)
}

fn file() -> impl Strategy<Value = FileDescriptor> {
    (
        any::<[u8; 16]>(),
        any::<String>(),
        "[a-z0-9][a-z0-9.+-]{0,15}/[a-z0-9][a-z0-9.+-]{0,30}",
        any::<[u8; 32]>(),
        0..=MAX_FILE_BYTES,
        any::<[u8; 32]>(),
    )
        .prop_map(|(id, name, media_type, key, size, hash)| {
            FileDescriptor::new(
                FileId::from_bytes(id),
                FileName::sanitize(&name),
                MediaType::new(media_type).unwrap(),
                FileKey::from_bytes(&key),
                FileDigest::new(size, hash),
            )
            .unwrap()
        })
}

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        "\\PC{1,300}".prop_map(|sdp| Signal::Offer(Sdp::new(sdp).unwrap())),
        "\\PC{1,300}".prop_map(|sdp| Signal::Answer(Sdp::new(sdp).unwrap())),
        ("\\PC{0,200}", proptest::option::of("[a-z0-9]{1,8}"), any::<Option<u16>>()).prop_map(
            |(candidate, mid, index)| {
                Signal::IceCandidate(IceCandidate::new(candidate, mid, index).unwrap())
            }
        ),
        prop_oneof![
            Just(HangUpReason::Normal),
            Just(HangUpReason::ConnectionFailed),
            Just(HangUpReason::NoAnswer),
            Just(HangUpReason::AnsweredElsewhere),
        ]
        .prop_map(Signal::HangUp),
        prop_oneof![Just(RejectReason::Busy), Just(RejectReason::Declined)]
            .prop_map(Signal::Reject),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        "\\PC{1,500}".prop_map(|text| Body::Text(Text::new(text).unwrap())),
        file().prop_map(Body::File),
        (
            prop_oneof![Just(ReceiptKind::Delivered), Just(ReceiptKind::Read)],
            proptest::collection::vec(message_id(), 1..40),
        )
            .prop_map(|(kind, ids)| Body::Receipt(Receipt::new(kind, ids).unwrap())),
        timer().prop_map(Body::TimerChange),
        (any::<[u8; 16]>(), signal()).prop_map(|(id, signal)| Body::Call(CallSignal {
            call_id: CallId::from_bytes(id),
            signal
        })),
        prop_oneof![Just(Typing::Started), Just(Typing::Stopped)].prop_map(Body::Typing),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    (message_id(), any::<u64>(), timer(), body())
        .prop_map(|(id, sent_at_ms, timer, body)| Content { id, sent_at_ms, timer, body })
}

proptest! {
    #[test]
    fn content_round_trips(content in content()) {
        let bytes = content.encode();
        let decoded = Content::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &content);
        prop_assert_eq!(&*decoded.encode(), &*bytes);
    }

    #[test]
    fn file_name_sanitize_always_gives_a_valid_name(name in any::<String>()) {
        let clean = FileName::sanitize(&name);
        prop_assert!(clean.as_str().len() <= MAX_FILE_NAME_BYTES);
        prop_assert_eq!(FileName::new(clean.as_str().to_owned()).unwrap(), clean.clone());
        // A valid name is left as it is.
        if let Ok(valid) = FileName::new(name.clone()) {
            prop_assert_eq!(valid, clean);
        }
    }

    #[test]
    fn envelope_round_trips(len in MIN_SEALED_BYTES..MIN_SEALED_BYTES + 4096, byte in any::<u8>()) {
        let envelope = Envelope::new(vec![byte; len]).unwrap();
        prop_assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
    }

    #[test]
    fn device_message_round_trips(
        initiation in proptest::option::of(prop_oneof![Just(MIN_INITIATION_BYTES), Just(MAX_INITIATION_BYTES)]),
        ratchet in xchat_crypto::ratchet::MIN_MESSAGE_BYTES..8192usize,
        byte in any::<u8>(),
    ) {
        let message = match initiation {
            Some(len) => DeviceMessage::first(vec![byte; len], vec![byte; ratchet]).unwrap(),
            None => DeviceMessage::ratchet(vec![byte; ratchet]).unwrap(),
        };
        let decoded = DeviceMessage::decode(&message.encode()).unwrap();
        prop_assert_eq!(decoded.initiation().map(<[u8]>::len), initiation);
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn mailbox_requests_round_trip_and_verify(
        seed in any::<u64>(),
        envelope in proptest::collection::vec(any::<u8>(), 1..2000),
        ttl in 1..=xchat_proto::mailbox::MAX_TTL_SECONDS,
        difficulty in 0u8..4,
        now_ms in 0..u64::MAX / 2,
        ids in proptest::collection::vec(any::<[u8; 32]>(), 1..20),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let owner = SigningKey::generate(&mut rng);
        let ids: Vec<ItemId> = ids.into_iter().map(ItemId::from_bytes).collect();
        let store = StoreRequest::new(owner.verifying_key(), envelope, ttl, difficulty).unwrap();
        let fetch = FetchRequest::new(&owner, now_ms, &mut rng);
        let delete = DeleteRequest::new(&owner, now_ms, ids, &mut rng).unwrap();
        for request in [Request::Store(store), Request::Fetch(fetch), Request::Delete(delete)] {
            let verified = match UnverifiedRequest::decode(&request.encode()).unwrap() {
                UnverifiedRequest::Store(store) => Request::Store(store.verify(difficulty).unwrap()),
                UnverifiedRequest::Fetch(fetch) => Request::Fetch(fetch.verify(now_ms).unwrap()),
                UnverifiedRequest::Delete(delete) => Request::Delete(delete.verify(now_ms).unwrap()),
            };
            prop_assert_eq!(verified, request);
        }
    }

    #[test]
    fn mailbox_responses_round_trip(
        items in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 1..300)), 0..20),
        more in any::<bool>(),
        count in any::<u32>(),
        id in any::<[u8; 32]>(),
        required_bits in proptest::option::of(1..=MAX_DEMANDED_DIFFICULTY_BITS),
    ) {
        let mut page = Fetched::new();
        for (stored_at_ms, envelope) in items {
            page.push(Item::new(stored_at_ms, envelope).unwrap()).unwrap();
        }
        page.set_more(more);
        for response in [
            Response::Fetched(page),
            Response::Stored(ItemId::from_bytes(id)),
            Response::Deleted { count },
            Response::Refused(ErrorCode::MailboxFull),
            Response::Refused(ErrorCode::InsufficientWork { required_bits }),
        ] {
            prop_assert_eq!(Response::decode(&response.encode()).unwrap(), response);
        }
    }
}

#[test]
fn largest_envelope_round_trips() {
    let envelope = Envelope::new(vec![0xab; MAX_SEALED_BYTES]).unwrap();
    assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
}
