use prost::Message;
use xchat_crypto::file::{self, FileDigest, FileKey};

use super::*;

fn id(byte: u8) -> MessageId {
    MessageId::from_bytes([byte; MESSAGE_ID_BYTES])
}

fn content(body: Body) -> Content {
    Content { id: id(1), sent_at_ms: 1_790_000_000_000, timer: VanishingTimer::OFF, body }
}

fn file_descriptor(name: &str, size: u64) -> FileDescriptor {
    FileDescriptor::new(
        FileId::from_bytes([2; FILE_ID_BYTES]),
        FileName::new(name.to_owned()).unwrap(),
        MediaType::new("image/png".to_owned()).unwrap(),
        FileKey::from_bytes(&[0x42; file::FILE_KEY_BYTES]),
        FileDigest::new(size, [3; file::HASH_BYTES]),
    )
    .unwrap()
}

fn round_trip(content: &Content) -> Content {
    let bytes = content.encode();
    assert!(bytes.len() <= MAX_CONTENT_BYTES, "{} bytes", bytes.len());
    Content::decode(&bytes).unwrap()
}

/// A valid content as its generated struct, for breaking one field.
fn raw(body: Body) -> pb::Content {
    content(body).to_proto()
}

fn decode_raw(raw: &pb::Content) -> Result<Content, ProtoError> {
    Content::decode(&raw.encode_to_vec())
}

fn text(text: &str) -> Body {
    Body::Text(Text::new(text.to_owned()).unwrap())
}

#[test]
fn every_body_round_trips() {
    let call_id = CallId::from_bytes([9; CALL_ID_BYTES]);
    let bodies = vec![
        text("hello"),
        Body::File(file_descriptor("photo.png", 1234)),
        Body::Receipt(Receipt::new(ReceiptKind::Read, vec![id(4), id(5)]).unwrap()),
        Body::TimerChange(VanishingTimer::from_secs(3600).unwrap()),
        Body::TimerChange(VanishingTimer::OFF),
        Body::Call(CallSignal {
            call_id,
            signal: Signal::Offer(Sdp::new("v=0\r\n".to_owned()).unwrap()),
        }),
        Body::Call(CallSignal {
            call_id,
            signal: Signal::Answer(Sdp::new("v=0\r\n".to_owned()).unwrap()),
        }),
        Body::Call(CallSignal {
            call_id,
            signal: Signal::IceCandidate(
                IceCandidate::new(
                    "candidate:1 1 udp 1 192.0.2.1 4000 typ host".to_owned(),
                    Some("0".to_owned()),
                    Some(0),
                )
                .unwrap(),
            ),
        }),
        Body::Call(CallSignal {
            call_id,
            signal: Signal::IceCandidate(IceCandidate::new(String::new(), None, None).unwrap()),
        }),
        Body::Call(CallSignal { call_id, signal: Signal::HangUp(HangUpReason::AnsweredElsewhere) }),
        Body::Call(CallSignal { call_id, signal: Signal::Reject(RejectReason::Busy) }),
        Body::Typing(Typing::Started),
        Body::Typing(Typing::Stopped),
    ];
    for body in bodies {
        let mut content = content(body);
        content.timer = VanishingTimer::from_secs(MAX_VANISHING_TIMER_SECS).unwrap();
        assert_eq!(round_trip(&content), content);
    }
}

#[test]
fn largest_content_of_each_kind_fits_a_ratchet_message() {
    let call_id = CallId::from_bytes([9; CALL_ID_BYTES]);
    let name = "n".repeat(MAX_FILE_NAME_BYTES);
    let media_type = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    let largest = [
        text(&"x".repeat(MAX_TEXT_BYTES)),
        Body::File(
            FileDescriptor::new(
                FileId::from_bytes([0xff; FILE_ID_BYTES]),
                FileName::new(name).unwrap(),
                MediaType::new(media_type).unwrap(),
                FileKey::from_bytes(&[0xff; file::FILE_KEY_BYTES]),
                FileDigest::new(file::MAX_FILE_BYTES, [0xff; file::HASH_BYTES]),
            )
            .unwrap(),
        ),
        Body::Receipt(Receipt::new(ReceiptKind::Read, vec![id(0xff); MAX_RECEIPT_IDS]).unwrap()),
        Body::Call(CallSignal {
            call_id,
            signal: Signal::Offer(Sdp::new("s".repeat(MAX_SDP_BYTES)).unwrap()),
        }),
        Body::Call(CallSignal {
            call_id,
            signal: Signal::IceCandidate(
                IceCandidate::new(
                    "c".repeat(MAX_ICE_CANDIDATE_BYTES),
                    Some("m".repeat(MAX_SDP_MID_BYTES)),
                    Some(u16::MAX),
                )
                .unwrap(),
            ),
        }),
    ];
    for body in largest {
        let content = Content {
            id: id(0xff),
            sent_at_ms: u64::MAX,
            timer: VanishingTimer::from_secs(MAX_VANISHING_TIMER_SECS).unwrap(),
            body,
        };
        assert_eq!(round_trip(&content), content);
    }
}

#[test]
fn decode_refuses_input_over_the_limit_before_decoding() {
    let bytes = vec![0u8; MAX_CONTENT_BYTES + 1];
    assert_eq!(
        Content::decode(&bytes),
        Err(ProtoError::TooLarge {
            message: "Content",
            len: MAX_CONTENT_BYTES + 1,
            max: MAX_CONTENT_BYTES
        })
    );
}

#[test]
fn decode_refuses_missing_id_and_body() {
    let mut bad = raw(text("hi"));
    bad.id.clear();
    assert_eq!(decode_raw(&bad), Err(ProtoError::MissingField { field: "Content.id" }));
    let mut bad = raw(text("hi"));
    bad.id.push(0);
    assert_eq!(
        decode_raw(&bad),
        Err(ProtoError::WrongLength { field: "Content.id", len: 17, expected: 16 })
    );
    let mut bad = raw(text("hi"));
    bad.body = None;
    assert_eq!(decode_raw(&bad), Err(ProtoError::MissingField { field: "Content.body" }));
}

#[test]
fn text_is_one_to_max_bytes() {
    assert_eq!(Text::new(String::new()), Err(ProtoError::MissingField { field: "Text.text" }));
    assert!(Text::new("x".repeat(MAX_TEXT_BYTES)).is_ok());
    assert_eq!(
        Text::new("x".repeat(MAX_TEXT_BYTES + 1)),
        Err(ProtoError::LengthOutOfRange {
            field: "Text.text",
            len: MAX_TEXT_BYTES + 1,
            min: 1,
            max: MAX_TEXT_BYTES
        })
    );
    let bad = pb::Content {
        body: Some(pb::content::Body::Text(pb::Text { text: "x".repeat(MAX_TEXT_BYTES + 1) })),
        ..raw(text("hi"))
    };
    assert!(matches!(
        decode_raw(&bad),
        Err(ProtoError::LengthOutOfRange { field: "Text.text", .. })
    ));
}

#[test]
fn text_that_is_not_utf8_is_malformed() {
    let mut bytes = content(text("hi")).encode().to_vec();
    let at = bytes.windows(2).position(|w| w == b"hi").unwrap();
    bytes[at] = 0xff;
    assert_eq!(Content::decode(&bytes), Err(ProtoError::Malformed { message: "Content" }));
}

#[test]
fn vanishing_timer_is_off_or_thirty_seconds_to_four_weeks() {
    assert_eq!(VanishingTimer::from_secs(0), Ok(VanishingTimer::OFF));
    assert!(VanishingTimer::OFF.is_off());
    assert_eq!(VanishingTimer::OFF.duration(), None);
    for secs in [1, MIN_VANISHING_TIMER_SECS - 1, MAX_VANISHING_TIMER_SECS + 1, u32::MAX] {
        assert!(matches!(VanishingTimer::from_secs(secs), Err(ProtoError::OutOfRange { .. })));
    }
    for secs in [MIN_VANISHING_TIMER_SECS, 3600, MAX_VANISHING_TIMER_SECS] {
        let timer = VanishingTimer::from_secs(secs).unwrap();
        assert_eq!(timer.duration(), Some(Duration::from_secs(secs.into())));
        assert_eq!(timer.as_secs(), secs);
        assert_eq!(VanishingTimer::after(Duration::from_secs(secs.into())), Ok(timer));
    }
    assert_eq!(MAX_VANISHING_TIMER_SECS, 2_419_200);
    assert!(matches!(
        VanishingTimer::after(Duration::from_millis(30_500)),
        Err(ProtoError::Invalid { .. })
    ));
    assert!(matches!(
        VanishingTimer::after(Duration::from_secs(u64::from(u32::MAX) + 1)),
        Err(ProtoError::OutOfRange { .. })
    ));
    assert!(matches!(VanishingTimer::after(Duration::ZERO), Err(ProtoError::OutOfRange { .. })));
}

#[test]
fn decode_refuses_timers_out_of_range() {
    let mut bad = raw(text("hi"));
    bad.timer_seconds = MIN_VANISHING_TIMER_SECS - 1;
    assert_eq!(
        decode_raw(&bad),
        Err(ProtoError::OutOfRange {
            field: "Content.timer_seconds",
            value: 29,
            min: 30,
            max: MAX_VANISHING_TIMER_SECS.into()
        })
    );
    let bad = raw(Body::TimerChange(VanishingTimer::OFF));
    let bad = pb::Content {
        body: Some(pb::content::Body::TimerChange(pb::TimerChange {
            timer_seconds: MAX_VANISHING_TIMER_SECS + 1,
        })),
        ..bad
    };
    assert!(matches!(
        decode_raw(&bad),
        Err(ProtoError::OutOfRange { field: "TimerChange.timer_seconds", .. })
    ));
}

fn raw_receipt(kind: i32, message_ids: Vec<Vec<u8>>) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Receipt(pb::Receipt { kind, message_ids })),
        ..raw(text("hi"))
    }
}

#[test]
fn receipt_refuses_bad_kinds_and_id_lists() {
    let ids = vec![vec![1; MESSAGE_ID_BYTES]];
    for kind in [0, 3, -1] {
        assert_eq!(
            decode_raw(&raw_receipt(kind, ids.clone())),
            Err(ProtoError::UnknownEnumValue { field: "Receipt.kind", value: kind })
        );
    }
    assert_eq!(
        decode_raw(&raw_receipt(1, vec![])),
        Err(ProtoError::MissingField { field: "Receipt.message_ids" })
    );
    assert_eq!(
        decode_raw(&raw_receipt(1, vec![vec![1; MESSAGE_ID_BYTES]; MAX_RECEIPT_IDS + 1])),
        Err(ProtoError::TooMany {
            field: "Receipt.message_ids",
            count: MAX_RECEIPT_IDS + 1,
            max: MAX_RECEIPT_IDS
        })
    );
    assert_eq!(
        decode_raw(&raw_receipt(1, vec![vec![1; MESSAGE_ID_BYTES], vec![1; 15]])),
        Err(ProtoError::WrongLength { field: "Receipt.message_ids", len: 15, expected: 16 })
    );
    assert_eq!(
        Receipt::new(ReceiptKind::Delivered, vec![id(1); MAX_RECEIPT_IDS + 1]),
        Err(ProtoError::TooMany {
            field: "Receipt.message_ids",
            count: MAX_RECEIPT_IDS + 1,
            max: MAX_RECEIPT_IDS
        })
    );
    assert_eq!(
        Receipt::new(ReceiptKind::Delivered, vec![]),
        Err(ProtoError::MissingField { field: "Receipt.message_ids" })
    );
}

#[test]
fn typing_refuses_unknown_states() {
    for state in [0, 3] {
        let bad = pb::Content {
            body: Some(pb::content::Body::Typing(pb::Typing { state })),
            ..raw(text("hi"))
        };
        assert_eq!(
            decode_raw(&bad),
            Err(ProtoError::UnknownEnumValue { field: "Typing.state", value: state })
        );
    }
}

#[test]
fn file_name_refuses_paths_controls_and_dots() {
    let refused = [
        ("", "missing"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("/etc/passwd", "path separator"),
        ("a\0b", "control character"),
        ("a\nb", "control character"),
        ("a\u{7f}", "control character"),
        ("invoice\u{202E}gnp.exe", "bidirectional control"),
        ("a\u{2066}b", "bidirectional control"),
        ("..", "contains \"..\""),
        ("a..b", "contains \"..\""),
        (".", "only dots"),
    ];
    for (name, reason) in refused {
        let err = FileName::new(name.to_owned()).unwrap_err();
        let ok = match err {
            ProtoError::Invalid { field: "FileDescriptor.name", reason: got } => got == reason,
            ProtoError::MissingField { field: "FileDescriptor.name" } => reason == "missing",
            _ => false,
        };
        assert!(ok, "{name:?}: {err:?}");
    }
    assert!(matches!(
        FileName::new("n".repeat(MAX_FILE_NAME_BYTES + 1)),
        Err(ProtoError::LengthOutOfRange { field: "FileDescriptor.name", .. })
    ));
    for name in
        [".bashrc", "photo.png", "résumé 2024.pdf", "日本語.txt", "a.b.c", "n".repeat(255).as_str()]
    {
        assert_eq!(FileName::new(name.to_owned()).unwrap().as_str(), name);
    }
}

#[test]
fn file_name_sanitize_makes_valid_names() {
    let cases = [
        ("../../etc/passwd", ".__.__etc_passwd"),
        ("a/b\\c", "a_b_c"),
        ("evil\u{202E}gnp.exe", "evil_gnp.exe"),
        ("..", "._"),
        ("...", "._."),
        (".", "file"),
        ("", "file"),
        ("ok.txt", "ok.txt"),
    ];
    for (input, expected) in cases {
        assert_eq!(FileName::sanitize(input).as_str(), expected, "{input:?}");
    }
    // Cut on a character boundary: 'é' is 2 bytes.
    let long = "é".repeat(200);
    let name = FileName::sanitize(&long);
    assert_eq!(name.as_str().len(), 254);
}

#[test]
fn media_type_is_type_slash_subtype() {
    for good in [
        "image/png",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "text/plain",
        "a/b+json",
    ] {
        assert_eq!(MediaType::new(good.to_owned()).unwrap().as_str(), good);
    }
    for bad in [
        "png",
        "image/",
        "/png",
        "image/png; charset=utf-8",
        "image/png/x",
        "-a/b",
        "a/\u{e9}",
        "a b/c",
    ] {
        assert_eq!(
            MediaType::new(bad.to_owned()),
            Err(ProtoError::Invalid {
                field: "FileDescriptor.media_type",
                reason: "not type/subtype"
            }),
            "{bad:?}"
        );
    }
    assert_eq!(
        MediaType::new(String::new()),
        Err(ProtoError::MissingField { field: "FileDescriptor.media_type" })
    );
    assert!(MediaType::new(format!("{}/b", "a".repeat(128))).is_err());
    assert!(matches!(
        MediaType::new(format!("{}/{}", "a".repeat(127), "b".repeat(128))),
        Err(ProtoError::LengthOutOfRange { .. })
    ));
    assert_eq!(MediaType::octet_stream().as_str(), "application/octet-stream");
}

fn raw_file(change: impl FnOnce(&mut pb::FileDescriptor)) -> pb::Content {
    let mut file = file_descriptor("a.txt", 10).to_proto();
    change(&mut file);
    pb::Content { body: Some(pb::content::Body::File(file)), ..raw(text("hi")) }
}

#[test]
fn file_descriptor_refuses_each_invalid_field() {
    let cases: Vec<(pb::Content, ProtoError)> = vec![
        (
            raw_file(|f| f.file_id.clear()),
            ProtoError::MissingField { field: "FileDescriptor.file_id" },
        ),
        (
            raw_file(|f| f.name = "../x".to_owned()),
            ProtoError::Invalid { field: "FileDescriptor.name", reason: "path separator" },
        ),
        (
            raw_file(|f| f.media_type.clear()),
            ProtoError::MissingField { field: "FileDescriptor.media_type" },
        ),
        (
            raw_file(|f| f.size = file::MAX_FILE_BYTES + 1),
            ProtoError::OutOfRange {
                field: "FileDescriptor.size",
                value: file::MAX_FILE_BYTES + 1,
                min: 0,
                max: file::MAX_FILE_BYTES,
            },
        ),
        (
            raw_file(|f| f.key.truncate(31)),
            ProtoError::WrongLength { field: "FileDescriptor.key", len: 31, expected: 32 },
        ),
        (raw_file(|f| f.hash.clear()), ProtoError::MissingField { field: "FileDescriptor.hash" }),
        (
            raw_file(|f| f.chunk_size = 4096),
            ProtoError::OutOfRange {
                field: "FileDescriptor.chunk_size",
                value: 4096,
                min: file::CHUNK_BYTES as u64,
                max: file::CHUNK_BYTES as u64,
            },
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(decode_raw(&bad), Err(expected));
    }
    assert!(matches!(
        FileDescriptor::new(
            FileId::from_bytes([0; FILE_ID_BYTES]),
            FileName::sanitize("a"),
            MediaType::octet_stream(),
            FileKey::from_bytes(&[0; 32]),
            FileDigest::new(file::MAX_FILE_BYTES + 1, [0; 32]),
        ),
        Err(ProtoError::OutOfRange { field: "FileDescriptor.size", .. })
    ));
}

#[test]
fn file_descriptors_with_other_keys_differ() {
    let a = file_descriptor("a.txt", 10);
    let b = FileDescriptor::new(
        a.id(),
        a.name().clone(),
        a.media_type().clone(),
        FileKey::from_bytes(&[0x43; file::FILE_KEY_BYTES]),
        *a.digest(),
    )
    .unwrap();
    assert_ne!(a, b);
    assert_eq!(a, a.clone());
    assert_eq!(a.size(), 10);
    assert_eq!(a.chunk_bytes(), file::CHUNK_BYTES);
}

fn raw_call(signal: Option<pb::call_signal::Signal>) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Call(pb::CallSignal {
            call_id: vec![1; CALL_ID_BYTES],
            signal,
        })),
        ..raw(text("hi"))
    }
}

#[test]
fn call_signal_refuses_each_invalid_field() {
    use pb::call_signal::Signal as S;
    let ice = |candidate: String, sdp_mid: Option<String>, sdp_m_line_index: Option<u32>| {
        Some(S::IceCandidate(pb::IceCandidate { candidate, sdp_mid, sdp_m_line_index }))
    };
    let cases: Vec<(pb::Content, ProtoError)> = vec![
        (raw_call(None), ProtoError::MissingField { field: "CallSignal.signal" }),
        (
            raw_call(Some(S::Offer(String::new()))),
            ProtoError::MissingField { field: "CallSignal.offer" },
        ),
        (
            raw_call(Some(S::Answer("s".repeat(MAX_SDP_BYTES + 1)))),
            ProtoError::LengthOutOfRange {
                field: "CallSignal.answer",
                len: MAX_SDP_BYTES + 1,
                min: 1,
                max: MAX_SDP_BYTES,
            },
        ),
        (
            raw_call(ice("c".repeat(MAX_ICE_CANDIDATE_BYTES + 1), None, None)),
            ProtoError::LengthOutOfRange {
                field: "IceCandidate.candidate",
                len: MAX_ICE_CANDIDATE_BYTES + 1,
                min: 0,
                max: MAX_ICE_CANDIDATE_BYTES,
            },
        ),
        (
            raw_call(ice("c".to_owned(), Some(String::new()), None)),
            ProtoError::MissingField { field: "IceCandidate.sdp_mid" },
        ),
        (
            raw_call(ice("c".to_owned(), Some("m".repeat(MAX_SDP_MID_BYTES + 1)), None)),
            ProtoError::LengthOutOfRange {
                field: "IceCandidate.sdp_mid",
                len: MAX_SDP_MID_BYTES + 1,
                min: 1,
                max: MAX_SDP_MID_BYTES,
            },
        ),
        (
            raw_call(ice("c".to_owned(), None, Some(65_536))),
            ProtoError::OutOfRange {
                field: "IceCandidate.sdp_m_line_index",
                value: 65_536,
                min: 0,
                max: 65_535,
            },
        ),
        (
            raw_call(Some(S::HangUp(pb::HangUp { reason: 0 }))),
            ProtoError::UnknownEnumValue { field: "HangUp.reason", value: 0 },
        ),
        (
            raw_call(Some(S::HangUp(pb::HangUp { reason: 99 }))),
            ProtoError::UnknownEnumValue { field: "HangUp.reason", value: 99 },
        ),
        (
            raw_call(Some(S::Reject(pb::Reject { reason: 3 }))),
            ProtoError::UnknownEnumValue { field: "Reject.reason", value: 3 },
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(decode_raw(&bad), Err(expected));
    }
    let mut bad = raw_call(Some(S::Reject(pb::Reject { reason: 1 })));
    if let Some(pb::content::Body::Call(call)) = &mut bad.body {
        call.call_id.truncate(8);
    }
    assert_eq!(
        decode_raw(&bad),
        Err(ProtoError::WrongLength { field: "CallSignal.call_id", len: 8, expected: 16 })
    );
}

#[test]
fn debug_never_shows_what_users_wrote_or_keys() {
    let secret = "the secret plan";
    let shown = [
        format!("{:?}", content(text(secret))),
        format!("{:?}", FileName::new(secret.to_owned()).unwrap()),
        format!("{:?}", Sdp::new(secret.to_owned()).unwrap()),
        format!("{:?}", IceCandidate::new(secret.to_owned(), None, None).unwrap()),
    ];
    for shown in shown {
        assert!(!shown.contains(secret), "{shown}");
    }
    let file = format!("{:?}", content(Body::File(file_descriptor("secret-name.txt", 1))));
    assert!(!file.contains("secret-name"), "{file}");
    assert!(!file.contains("42, 42") && !file.contains("4242"), "{file}");
    assert!(file.contains("redacted"), "{file}");
    let raw = format!("{:?}", file_descriptor("secret-name.txt", 1).to_proto());
    assert!(!raw.contains("secret-name") && !raw.contains("66, 66"), "{raw}");
}

#[test]
fn message_ids_carry_their_time_and_sort_in_the_order_they_were_made() {
    use rand_chacha::rand_core::SeedableRng as _;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let now = 1_790_000_000_123_u64;
    let first = MessageId::new(now, &mut rng);
    let same_ms = MessageId::new(now, &mut rng);
    let later = MessageId::new(now + 1, &mut rng);
    assert_eq!(first.as_bytes()[..6], now.to_be_bytes()[2..]);
    assert_ne!(first, same_ms, "80 random bits tell apart ids of one millisecond");
    assert!(first.max(same_ms) < later);
}

/// Texts `1..=n`, each with its own id.
fn texts(n: u8) -> Vec<Content> {
    (1..=n).map(|i| Content { id: id(i), ..content(text(&format!("text {i}"))) }).collect()
}

#[test]
fn several_texts_round_trip_in_order_in_one_plaintext() {
    for n in [1, 2, 64] {
        let contents = texts(n);
        let bytes = Content::encode_all(&contents).unwrap();
        assert_eq!(Content::decode_all(&bytes).unwrap(), contents, "{n} texts");
    }
    // One content of any kind is what `encode` makes, and both decoders read it.
    let receipt = content(Body::Receipt(Receipt::new(ReceiptKind::Read, vec![id(4)]).unwrap()));
    let one = Content::encode_all(std::slice::from_ref(&receipt)).unwrap();
    assert_eq!(*one, *receipt.encode());
    assert_eq!(Content::decode_all(&one).unwrap(), vec![receipt.clone()]);
    assert_eq!(Content::decode(&one).unwrap(), receipt);
}

#[test]
fn several_contents_are_refused_where_they_break_a_rule() {
    let receipt = content(Body::Receipt(Receipt::new(ReceiptKind::Read, vec![id(4)]).unwrap()));
    let mut mixed = texts(2);
    mixed.push(receipt.clone());
    let not_only_texts =
        Err(ProtoError::Invalid { field: "Content.more", reason: "not only texts" });
    assert_eq!(Content::encode_all(&mixed).map(|_| ()), not_only_texts);
    assert_eq!(
        Content::encode_all(&[]).map(|_| ()),
        Err(ProtoError::MissingField { field: "Content" })
    );
    let too_many =
        Err(ProtoError::TooMany { field: "Content.more", count: 64, max: MAX_MORE_CONTENTS });
    assert_eq!(Content::encode_all(&texts(65)).map(|_| ()), too_many);

    // The same rules on the way in, from hand-made encodings.
    let mut raw_mixed = raw(text("first"));
    raw_mixed.more = vec![receipt.to_proto()];
    assert_eq!(
        Content::decode_all(&raw_mixed.encode_to_vec()),
        not_only_texts.clone().map(|()| vec![])
    );
    let mut raw_receipt_first = receipt.to_proto();
    raw_receipt_first.more = vec![raw(text("second"))];
    assert_eq!(
        Content::decode_all(&raw_receipt_first.encode_to_vec()),
        not_only_texts.map(|()| vec![])
    );
    let mut nested = raw(text("first"));
    let mut inner = raw(text("second"));
    inner.more = vec![raw(text("third"))];
    nested.more = vec![inner];
    assert_eq!(
        Content::decode_all(&nested.encode_to_vec()),
        Err(ProtoError::Invalid { field: "Content.more", reason: "nested" })
    );
    let mut crowded = raw(text("first"));
    crowded.more = texts(64).iter().map(Content::to_proto).collect();
    assert_eq!(Content::decode_all(&crowded.encode_to_vec()), too_many.map(|()| vec![]));
    // Where one content is expected, several are refused.
    let mut two = raw(text("first"));
    two.more = vec![raw(text("second"))];
    assert_eq!(
        decode_raw(&two),
        Err(ProtoError::Invalid {
            field: "Content.more",
            reason: "several contents where one is expected"
        })
    );
}
