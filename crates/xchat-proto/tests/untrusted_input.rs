//! Bytes from another device or a node never make a decoder panic: random
//! bytes, and valid encodings with bytes flipped, cut or appended. Whatever
//! a decoder accepts encodes to bytes it accepts again as the same value.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed setup is a failed test

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use xchat_crypto::signature::SigningKey;
use xchat_proto::bundle::{UnverifiedDeviceList, UnverifiedPreKeyRecord};
use xchat_proto::content::{
    Body, CallId, CallSignal, Content, MessageId, Receipt, ReceiptKind, Signal, Text, Typing,
    VanishingTimer,
};
use xchat_proto::envelope::{DeviceMessage, Envelope};
use xchat_proto::mailbox::{
    DeleteRequest, ErrorCode, FetchRequest, Fetched, Item, ItemId, Request, Response, StoreRequest,
    UnverifiedRequest,
};

/// Runs every decoder over `bytes`; each must return, and what one accepts
/// must survive its own round trip.
fn decode_everything(bytes: &[u8]) {
    if let Ok(envelope) = Envelope::decode(bytes) {
        assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
    }
    if let Ok(message) = DeviceMessage::decode(bytes) {
        assert_eq!(DeviceMessage::decode(&message.encode()).unwrap(), message);
    }
    if let Ok(content) = Content::decode(bytes) {
        assert_eq!(Content::decode(&content.encode()).unwrap(), content);
    }
    let _ = UnverifiedPreKeyRecord::decode(bytes);
    let _ = UnverifiedDeviceList::decode(bytes);
    let _ = UnverifiedRequest::decode(bytes).map(|request| match request {
        UnverifiedRequest::Store(store) => drop(store.verify(0)),
        UnverifiedRequest::Fetch(fetch) => drop(fetch.verify(0)),
        UnverifiedRequest::Delete(delete) => drop(delete.verify(0)),
    });
    if let Ok(response) = Response::decode(bytes) {
        assert_eq!(Response::decode(&response.encode()).unwrap(), response);
    }
}

/// Valid encodings of every decoder's message, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let owner = SigningKey::generate(&mut rng);
    let content = |body| {
        Content {
            id: MessageId::from_bytes([1; 16]),
            sent_at_ms: 1_790_000_000_000,
            timer: VanishingTimer::from_secs(60).unwrap(),
            body,
        }
        .encode()
        .to_vec()
    };
    let mut page = Fetched::new();
    page.push(Item::new(5, vec![9; 40]).unwrap()).unwrap();
    vec![
        Envelope::new(vec![1; 400]).unwrap().encode(),
        DeviceMessage::first(vec![2; 1460], vec![3; 341]).unwrap().encode(),
        content(Body::Text(Text::new("hello".to_owned()).unwrap())),
        content(Body::Receipt(
            Receipt::new(ReceiptKind::Read, vec![MessageId::from_bytes([4; 16]); 3]).unwrap(),
        )),
        content(Body::Call(CallSignal {
            call_id: CallId::from_bytes([5; 16]),
            signal: Signal::HangUp(xchat_proto::content::HangUpReason::Normal),
        })),
        content(Body::Typing(Typing::Started)),
        Request::Store(StoreRequest::new(owner.verifying_key(), vec![6; 50], 60, 0).unwrap())
            .encode(),
        Request::Fetch(FetchRequest::new(&owner, 1, &mut rng)).encode(),
        Request::Delete(
            DeleteRequest::new(&owner, 1, vec![ItemId::from_bytes([7; 32])], &mut rng).unwrap(),
        )
        .encode(),
        Response::Fetched(page).encode(),
        Response::Refused(ErrorCode::Stale).encode(),
        Response::Refused(ErrorCode::InsufficientWork { required_bits: Some(20) }).encode(),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        seed in 0..11usize,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = seeds().swap_remove(seed);
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        decode_everything(&bytes);
        let cut = cut.index(bytes.len() + 1);
        decode_everything(&bytes[..cut]);
        bytes.extend_from_slice(&tail);
        decode_everything(&bytes);
    }
}

#[test]
fn every_seed_decodes() {
    let seeds = seeds();
    assert!(Envelope::decode(&seeds[0]).is_ok());
    assert!(DeviceMessage::decode(&seeds[1]).is_ok());
    for content in &seeds[2..6] {
        assert!(Content::decode(content).is_ok());
    }
    for request in &seeds[6..9] {
        assert!(UnverifiedRequest::decode(request).is_ok());
    }
    for response in &seeds[9..] {
        assert!(Response::decode(response).is_ok());
    }
}
