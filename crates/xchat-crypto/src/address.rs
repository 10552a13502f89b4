//! An identity's address: what a user shares so others can reach them.
//!
//! An address is the bech32m (BIP350) encoding, under the human-readable part
//! `xchat`, of a version byte and the identity's 32-byte x-only BIP340 key
//! (`docs/keys.md`, `docs/protocol.md`):
//!
//! | field | bytes | value |
//! |---|---|---|
//! | version | 1 | [`ADDRESS_VERSION`] (0) |
//! | identity key | 32 | x-only secp256k1 key ([`VerifyingKey`]) |
//!
//! which gives 65 characters, `xchat1` then 59 more. bech32m's checksum
//! catches every single mistyped character (and any error in up to four
//! characters), so a typo is refused rather than sending a contact request to
//! a stranger. The same address is shown as an `xchat:` URI ([`Uri`]), the
//! form a QR code carries, optionally with the name its owner suggests.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::{CharError, UncheckedHrpstring, UncheckedHrpstringError};
use bech32::{Bech32m, Fe32, Hrp};

use crate::signature::{PUBLIC_KEY_BYTES, VerifyingKey};

/// The human-readable part of every address.
pub const HRP: Hrp = Hrp::parse_unchecked("xchat");
/// The version byte of the addresses this build writes and reads.
pub const ADDRESS_VERSION: u8 = 0;
/// Bytes of an address payload: version, then the identity key.
pub const PAYLOAD_BYTES: usize = 1 + PUBLIC_KEY_BYTES;
/// Characters of an address: `xchat`, `1`, 53 data characters, 6 checksum characters.
pub const ADDRESS_CHARS: usize = 5 + 1 + PAYLOAD_FE32 + 6;
/// Longest string [`Address::parse`] looks at, in characters (BIP173's limit).
pub const MAX_ADDRESS_CHARS: usize = 90;

/// The URI scheme of an address (`xchat:xchat1…`).
pub const URI_SCHEME: &str = "xchat";
/// Longest name an `xchat:` URI may suggest, in bytes of UTF-8 after percent-decoding.
pub const MAX_URI_NAME_BYTES: usize = 64;
/// Longest `xchat:` URI [`Uri::parse`] looks at, in bytes: scheme, address,
/// `?name=` and a name whose every byte is percent-encoded.
pub const MAX_URI_BYTES: usize =
    URI_SCHEME.len() + 1 + ADDRESS_CHARS + 1 + NAME_PARAMETER.len() + 3 * MAX_URI_NAME_BYTES;

/// 5-bit characters of the payload: 33 bytes are 264 bits, in 53 characters
/// with one bit of padding.
const PAYLOAD_FE32: usize = (PAYLOAD_BYTES * 8).div_ceil(5);
/// Bits of padding in the last payload character; they must be zero.
const PADDING_BITS: usize = PAYLOAD_FE32 * 5 - PAYLOAD_BYTES * 8;
/// The only query parameter an `xchat:` URI may carry.
const NAME_PARAMETER: &str = "name=";

/// An identity's address: its BIP340 key, shown as `xchat1…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    key: VerifyingKey,
}

impl Address {
    /// The address of an identity key.
    pub const fn from_key(key: VerifyingKey) -> Self {
        Self { key }
    }

    /// The identity key the address names.
    pub const fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Parses an address as typed or scanned: all lowercase or all uppercase.
    ///
    /// # Errors
    /// One [`AddressError`] per reason, checked in this order: too long,
    /// mixed case, invalid characters, wrong human-readable part, bad
    /// checksum, unknown version, wrong length, non-zero padding, and a key
    /// that is not on secp256k1.
    pub fn parse(address: &str) -> Result<Self, AddressError> {
        if address.len() > MAX_ADDRESS_CHARS {
            return Err(AddressError::TooLong { len: address.len(), max: MAX_ADDRESS_CHARS });
        }
        let unchecked = UncheckedHrpstring::new(address).map_err(|error| match error {
            UncheckedHrpstringError::Char(CharError::MixedCase) => AddressError::MixedCase,
            _ => AddressError::InvalidCharacter,
        })?;
        // `Hrp` compares case-insensitively; an all-uppercase address is the
        // same address (QR codes encode uppercase more compactly).
        if unchecked.hrp() != HRP {
            return Err(AddressError::WrongHrp);
        }
        let checked = unchecked
            .validate_and_remove_checksum::<Bech32m>()
            .map_err(|_| AddressError::Checksum)?;
        // The version comes before the length: a later version may have
        // another length, and "unknown version" tells the user to update.
        let mut bytes = checked.byte_iter();
        let version =
            bytes.next().ok_or(AddressError::WrongLength { len: 0, expected: PAYLOAD_BYTES })?;
        if version != ADDRESS_VERSION {
            return Err(AddressError::UnknownVersion(version));
        }
        let data = checked.data_part_ascii_no_checksum();
        let len = data.len() * 5 / 8;
        if len != PAYLOAD_BYTES {
            return Err(AddressError::WrongLength { len, expected: PAYLOAD_BYTES });
        }
        // Padding must be as short as possible and zero, or one key would
        // have several addresses.
        if data.len() != PAYLOAD_FE32 {
            return Err(AddressError::InvalidPadding);
        }
        let last = data
            .last()
            .and_then(|&c| Fe32::from_char(char::from(c)).ok())
            .ok_or(AddressError::InvalidCharacter)?;
        if last.to_u8() & ((1 << PADDING_BITS) - 1) != 0 {
            return Err(AddressError::InvalidPadding);
        }
        let mut key = [0u8; PUBLIC_KEY_BYTES];
        for (out, byte) in key.iter_mut().zip(bytes) {
            *out = byte;
        }
        let key = VerifyingKey::from_bytes(&key).map_err(|_| AddressError::InvalidKey)?;
        Ok(Self { key })
    }

    /// The address's payload: `version (1) || identity key (32)`.
    pub fn payload(&self) -> [u8; PAYLOAD_BYTES] {
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload[0] = ADDRESS_VERSION;
        payload[1..].copy_from_slice(&self.key.to_bytes());
        payload
    }

    /// The `xchat:xchat1…` URI of this address, with no name.
    pub fn to_uri(&self) -> String {
        Uri { address: *self, name: None }.to_string()
    }

    /// Parses an `xchat:` URI; see [`Uri::parse`].
    ///
    /// # Errors
    /// As [`Uri::parse`].
    pub fn parse_uri(uri: &str) -> Result<Uri, UriError> {
        Uri::parse(uri)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Encoding only fails past bech32m's 1023-character limit, far above 65.
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, HRP, &self.payload()).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<VerifyingKey> for Address {
    fn from(key: VerifyingKey) -> Self {
        Self::from_key(key)
    }
}

/// Why a string is not an xchat address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Longer than any address.
    #[error("address of {len} characters is longer than {max}")]
    TooLong {
        /// Characters given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Upper and lower case mixed: bech32m allows only one.
    #[error("address mixes upper and lower case")]
    MixedCase,
    /// A character outside bech32's alphabet, or no `1` separator.
    #[error("address contains a character that cannot appear in an address")]
    InvalidCharacter,
    /// Another human-readable part than `xchat` (another kind of address).
    #[error("not an xchat address")]
    WrongHrp,
    /// The bech32m checksum does not match: a character is mistyped.
    #[error("address checksum does not match: a character is mistyped")]
    Checksum,
    /// An address version this build does not know.
    #[error("unknown address version {0}")]
    UnknownVersion(u8),
    /// A payload of another length than version and key.
    #[error("address payload of {len} bytes, expected {expected}")]
    WrongLength {
        /// Bytes found.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Extra or non-zero padding bits after the key: not the canonical encoding.
    #[error("address is not canonically padded")]
    InvalidPadding,
    /// The 32 bytes are not the x-coordinate of a point on secp256k1.
    #[error("address key is not a valid public key")]
    InvalidKey,
}

/// An `xchat:` URI: an address and, optionally, the name its owner suggests
/// (`xchat:xchat1…?name=Alice`).
///
/// The name is a suggestion from whoever made the URI, never proof of
/// anything; the address is what is verified (by the safety number).
#[derive(Clone, PartialEq, Eq)]
pub struct Uri {
    address: Address,
    name: Option<String>,
}

impl Uri {
    /// A URI for `address`, suggesting `name` when given.
    ///
    /// # Errors
    /// [`UriError::NameTooLong`] or [`UriError::InvalidName`] (empty, or with
    /// control or bidirectional-override characters).
    pub fn new(address: Address, name: Option<&str>) -> Result<Self, UriError> {
        let name = name.map(check_name).transpose()?.map(str::to_owned);
        Ok(Self { address, name })
    }

    /// Parses `xchat:<address>` or `xchat:<address>?name=<percent-encoded
    /// UTF-8>`. The scheme and address are case-insensitive; nothing else is
    /// accepted (no other query parameter, no fragment). `+` is a literal
    /// plus sign: a space is `%20`.
    ///
    /// # Errors
    /// [`UriError`] naming what is wrong; [`UriError::Address`] wraps the
    /// address's own error.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        if uri.len() > MAX_URI_BYTES {
            return Err(UriError::TooLong { len: uri.len(), max: MAX_URI_BYTES });
        }
        let (scheme, rest) = uri.split_once(':').ok_or(UriError::NotXchatUri)?;
        if !scheme.eq_ignore_ascii_case(URI_SCHEME) {
            return Err(UriError::NotXchatUri);
        }
        let (address, query) = match rest.split_once('?') {
            Some((address, query)) => (address, Some(query)),
            None => (rest, None),
        };
        let address = Address::parse(address)?;
        let name = match query {
            None => None,
            Some(query) => {
                let value = query.strip_prefix(NAME_PARAMETER).ok_or(UriError::UnknownParameter)?;
                Some(decode_name(value)?)
            }
        };
        Ok(Self { address, name })
    }

    /// The address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The suggested name, percent-decoded.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URI_SCHEME}:{}", self.address)?;
        if let Some(name) = &self.name {
            write!(f, "?{NAME_PARAMETER}")?;
            for &byte in name.as_bytes() {
                if is_unreserved(byte) {
                    write!(f, "{}", char::from(byte))?;
                } else {
                    write!(f, "%{byte:02X}")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name is user data: logs get its length only.
        f.debug_struct("Uri")
            .field("address", &self.address)
            .field("name_bytes", &self.name.as_ref().map(String::len))
            .finish()
    }
}

/// RFC 3986 `unreserved`: the bytes a URI carries as they are.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 query characters other than `%`, less `&` and `#`: `&` would
/// start a second parameter and `#` a fragment, and xchat accepts neither.
fn is_query_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
        )
}

fn decode_name(value: &str) -> Result<String, UriError> {
    // A percent-encoded byte takes three characters: a longer value decodes
    // to more than the limit whatever it holds.
    if value.len() > 3 * MAX_URI_NAME_BYTES {
        return Err(UriError::NameTooLong { len: value.len(), max: MAX_URI_NAME_BYTES });
    }
    let raw = value.as_bytes();
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&byte) = raw.get(i) {
        if byte == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or(UriError::InvalidName)?;
            let hex = std::str::from_utf8(hex).map_err(|_| UriError::InvalidName)?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| UriError::InvalidName)?);
            i += 3;
        } else if byte == b'&' {
            return Err(UriError::UnknownParameter);
        } else if is_query_char(byte) {
            decoded.push(byte);
            i += 1;
        } else {
            return Err(UriError::InvalidName);
        }
    }
    let name = String::from_utf8(decoded).map_err(|_| UriError::InvalidName)?;
    check_name(&name)?;
    Ok(name)
}

fn check_name(name: &str) -> Result<&str, UriError> {
    if name.len() > MAX_URI_NAME_BYTES {
        return Err(UriError::NameTooLong { len: name.len(), max: MAX_URI_NAME_BYTES });
    }
    // Control characters and bidirectional overrides let a name rearrange
    // the text shown around it.
    let spoofing = |c: char| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if name.is_empty() || name.chars().any(spoofing) {
        return Err(UriError::InvalidName);
    }
    Ok(name)
}

/// Why a string is not an `xchat:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Longer than any `xchat:` URI.
    #[error("uri of {len} bytes is longer than {max}")]
    TooLong {
        /// Bytes given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not of the form `xchat:…`.
    #[error("not an xchat: uri")]
    NotXchatUri,
    /// The address part is not a valid address.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A query other than one `name=…`, or a fragment.
    #[error("uri carries a parameter other than name")]
    UnknownParameter,
    /// The name is empty, badly percent-encoded, not UTF-8, or holds control
    /// or bidirectional-override characters.
    #[error("uri name is malformed")]
    InvalidName,
    /// The name is longer than [`MAX_URI_NAME_BYTES`].
    #[error("uri name of {len} bytes is longer than {max}")]
    NameTooLong {
        /// Bytes given (percent-encoded, when refused before decoding).
        len: usize,
        /// The limit, in decoded bytes.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SigningKey;
    use bech32::{ByteIterExt, Fe32IterExt};
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

    fn key(seed: u64) -> VerifyingKey {
        SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(seed)).verifying_key()
    }

    /// A bech32m string of `xchat` over arbitrary 5-bit characters.
    fn encode_fes(hrp: Hrp, fes: Vec<Fe32>) -> String {
        fes.into_iter().with_checksum::<Bech32m>(&hrp).chars().collect()
    }

    fn encode_bytes(hrp: Hrp, bytes: &[u8]) -> String {
        bech32::encode::<Bech32m>(hrp, bytes).unwrap()
    }

    #[test]
    fn address_round_trips_and_has_the_documented_shape() {
        let address = Address::from_key(key(1));
        let text = address.to_string();
        assert_eq!(text.len(), ADDRESS_CHARS);
        assert_eq!(ADDRESS_CHARS, 65);
        assert!(text.starts_with("xchat1"));
        assert_eq!(Address::parse(&text), Ok(address));
        assert_eq!(text.parse::<Address>(), Ok(address));
        assert_eq!(address.key(), &key(1));
        assert_eq!(address.payload()[0], ADDRESS_VERSION);
    }

    #[test]
    fn address_of_a_fixed_key_is_stable() {
        // The BIP340 generator's x-coordinate (secret key 1): the address
        // format can never change silently.
        let g = VerifyingKey::from_bytes(
            &hex::decode("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        insta::assert_snapshot!(
            Address::from_key(g),
            @"xchat1qpumuen7l8wthtz45p3ftn58pvrs9xlumvkuu2xet8egzkcklqtesgxzth8"
        );
    }

    #[test]
    fn uppercase_address_is_accepted_and_mixed_case_refused() {
        let address = Address::from_key(key(2));
        let upper = address.to_string().to_ascii_uppercase();
        assert_eq!(Address::parse(&upper), Ok(address));
        let mut mixed = address.to_string();
        mixed.replace_range(10..11, &mixed[10..11].to_ascii_uppercase());
        assert_eq!(Address::parse(&mixed), Err(AddressError::MixedCase));
    }

    #[test]
    fn address_with_another_hrp_is_refused() {
        let payload = Address::from_key(key(3)).payload();
        let bitcoin = encode_bytes(Hrp::parse("bc").unwrap(), &payload);
        assert_eq!(Address::parse(&bitcoin), Err(AddressError::WrongHrp));
        let near = encode_bytes(Hrp::parse("xchar").unwrap(), &payload);
        assert_eq!(Address::parse(&near), Err(AddressError::WrongHrp));
    }

    #[test]
    fn bech32_checksum_instead_of_bech32m_is_refused() {
        let payload = Address::from_key(key(4)).payload();
        let bech32 = bech32::encode::<bech32::Bech32>(HRP, &payload).unwrap();
        assert_eq!(Address::parse(&bech32), Err(AddressError::Checksum));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut payload = Address::from_key(key(5)).payload();
        payload[0] = 1;
        assert_eq!(
            Address::parse(&encode_bytes(HRP, &payload)),
            Err(AddressError::UnknownVersion(1))
        );
    }

    #[test]
    fn wrong_length_is_refused() {
        let payload = Address::from_key(key(6)).payload();
        assert_eq!(
            Address::parse(&encode_bytes(HRP, &payload[..32])),
            Err(AddressError::WrongLength { len: 32, expected: PAYLOAD_BYTES })
        );
        let mut longer = payload.to_vec();
        longer.push(0);
        assert_eq!(
            Address::parse(&encode_bytes(HRP, &longer)),
            Err(AddressError::WrongLength { len: 34, expected: PAYLOAD_BYTES })
        );
        assert_eq!(
            Address::parse(&encode_bytes(HRP, &[])),
            Err(AddressError::WrongLength { len: 0, expected: PAYLOAD_BYTES })
        );
    }

    #[test]
    fn extra_or_non_zero_padding_is_refused() {
        let payload = Address::from_key(key(7)).payload();
        // One more 5-bit character still decodes to 33 bytes, with 6 padding bits.
        let mut fes: Vec<Fe32> = payload.iter().copied().bytes_to_fes().collect();
        fes.push(Fe32::Q);
        assert_eq!(Address::parse(&encode_fes(HRP, fes)), Err(AddressError::InvalidPadding));
        let mut fes: Vec<Fe32> = payload.iter().copied().bytes_to_fes().collect();
        let last = fes.pop().unwrap();
        fes.push(Fe32::try_from(last.to_u8() | 1).unwrap());
        assert_eq!(Address::parse(&encode_fes(HRP, fes)), Err(AddressError::InvalidPadding));
    }

    #[test]
    fn key_not_on_the_curve_is_refused() {
        // x = 5 is not on secp256k1 (BIP340 vector 5); 0xff.. is not below p.
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload[1..].copy_from_slice(
            &hex::decode("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34")
                .unwrap(),
        );
        assert_eq!(Address::parse(&encode_bytes(HRP, &payload)), Err(AddressError::InvalidKey));
        payload[1..].fill(0xff);
        assert_eq!(Address::parse(&encode_bytes(HRP, &payload)), Err(AddressError::InvalidKey));
    }

    #[test]
    fn malformed_strings_are_refused() {
        let address = Address::from_key(key(8)).to_string();
        assert_eq!(Address::parse(""), Err(AddressError::InvalidCharacter));
        assert_eq!(Address::parse(&address.replace('1', "")), Err(AddressError::InvalidCharacter));
        assert_eq!(Address::parse(&format!("{address} ")), Err(AddressError::InvalidCharacter));
        let long = format!("{address}{}", "q".repeat(MAX_ADDRESS_CHARS));
        assert_eq!(
            Address::parse(&long),
            Err(AddressError::TooLong { len: long.len(), max: MAX_ADDRESS_CHARS })
        );
    }

    #[test]
    fn every_single_character_substitution_is_refused() {
        let alphabet: Vec<char> = CHARSET
            .chars()
            .chain(CHARSET.to_ascii_uppercase().chars())
            .chain("1bio-_ .:é".chars())
            .collect();
        for seed in 0..4 {
            let address = Address::from_key(key(100 + seed)).to_string();
            let chars: Vec<char> = address.chars().collect();
            let mut tried = 0;
            for position in 0..chars.len() {
                for &substitute in &alphabet {
                    if substitute == chars[position] {
                        continue;
                    }
                    let mut typo = chars.clone();
                    typo[position] = substitute;
                    let typo: String = typo.into_iter().collect();
                    let result = Address::parse(&typo);
                    assert!(result.is_err(), "{typo} accepted");
                    // A wrong but valid character is caught where it belongs:
                    // in the hrp as another hrp, in the data by the checksum.
                    if CHARSET.contains(substitute) && position != 5 {
                        let expected = if position < 5 {
                            AddressError::WrongHrp
                        } else {
                            AddressError::Checksum
                        };
                        assert_eq!(result, Err(expected), "{typo}");
                    }
                    tried += 1;
                }
            }
            assert!(tried > ADDRESS_CHARS * CHARSET.len());
        }
    }

    #[test]
    fn uri_round_trips_with_and_without_a_name() {
        let address = Address::from_key(key(9));
        let uri = address.to_uri();
        assert_eq!(uri, format!("xchat:{address}"));
        let parsed = Address::parse_uri(&uri).unwrap();
        assert_eq!(parsed.address(), &address);
        assert_eq!(parsed.name(), None);

        let named = Uri::new(address, Some("Zoë & Ann #1")).unwrap().to_string();
        assert_eq!(named, format!("xchat:{address}?name=Zo%C3%AB%20%26%20Ann%20%231"));
        let parsed = Uri::parse(&named).unwrap();
        assert_eq!(parsed.address(), &address);
        assert_eq!(parsed.name(), Some("Zoë & Ann #1"));
    }

    #[test]
    fn uri_accepts_uppercase_and_literal_query_characters() {
        let address = Address::from_key(key(10));
        let upper = format!("XCHAT:{}", address.to_string().to_ascii_uppercase());
        assert_eq!(Uri::parse(&upper).unwrap().address(), &address);
        let uri = format!("xchat:{address}?name=a+b:c@d");
        assert_eq!(Uri::parse(&uri).unwrap().name(), Some("a+b:c@d"));
    }

    #[test]
    fn uri_refuses_anything_else() {
        let address = Address::from_key(key(11));
        let cases = [
            (format!("{address}"), UriError::NotXchatUri),
            (format!("bitcoin:{address}"), UriError::NotXchatUri),
            (format!("xchat://{address}"), UriError::Address(AddressError::WrongHrp)),
            (format!("xchat:{address}?"), UriError::UnknownParameter),
            (format!("xchat:{address}?label=x"), UriError::UnknownParameter),
            (format!("xchat:{address}?name=a&x=1"), UriError::UnknownParameter),
            (format!("xchat:{address}?name=a&name=b"), UriError::UnknownParameter),
            (format!("xchat:{address}#frag"), UriError::Address(AddressError::InvalidCharacter)),
            (format!("xchat:{address}?name=a#frag"), UriError::InvalidName),
            (format!("xchat:{address}?name="), UriError::InvalidName),
            (format!("xchat:{address}?name=a b"), UriError::InvalidName),
            (format!("xchat:{address}?name=%4"), UriError::InvalidName),
            (format!("xchat:{address}?name=%zz"), UriError::InvalidName),
            (format!("xchat:{address}?name=%ff"), UriError::InvalidName),
            (format!("xchat:{address}?name=a%0Ab"), UriError::InvalidName),
            (format!("xchat:{address}?name=%E2%80%AEevil"), UriError::InvalidName),
            (format!("xchat:{address}?name=é"), UriError::InvalidName),
        ];
        for (uri, expected) in cases {
            assert_eq!(Uri::parse(&uri), Err(expected), "{uri}");
        }
        let mut typo = address.to_string();
        typo.replace_range(20..21, if &typo[20..21] == "q" { "p" } else { "q" });
        assert_eq!(
            Uri::parse(&format!("xchat:{typo}")),
            Err(UriError::Address(AddressError::Checksum))
        );
    }

    #[test]
    fn uri_name_is_length_limited() {
        let address = Address::from_key(key(12));
        let longest = "a".repeat(MAX_URI_NAME_BYTES);
        let uri = Uri::new(address, Some(&longest)).unwrap().to_string();
        assert_eq!(Uri::parse(&uri).unwrap().name(), Some(longest.as_str()));
        // The longest name with every byte escaped still fits the URI limit.
        let escaped = "\u{e9}".repeat(MAX_URI_NAME_BYTES / 2);
        let uri = Uri::new(address, Some(&escaped)).unwrap().to_string();
        assert_eq!(uri.len(), MAX_URI_BYTES);
        assert_eq!(Uri::parse(&uri).unwrap().name(), Some(escaped.as_str()));

        let too_long = "a".repeat(MAX_URI_NAME_BYTES + 1);
        assert_eq!(
            Uri::new(address, Some(&too_long)),
            Err(UriError::NameTooLong { len: MAX_URI_NAME_BYTES + 1, max: MAX_URI_NAME_BYTES })
        );
        let uri = format!("xchat:{address}?name={too_long}");
        assert_eq!(
            Uri::parse(&uri),
            Err(UriError::NameTooLong { len: MAX_URI_NAME_BYTES + 1, max: MAX_URI_NAME_BYTES })
        );
        let huge = format!("xchat:{address}?name={}", "%41".repeat(1000));
        assert!(matches!(Uri::parse(&huge), Err(UriError::TooLong { .. })));
    }

    #[test]
    fn uri_debug_does_not_show_the_name() {
        let uri = Uri::new(Address::from_key(key(13)), Some("Secret Name")).unwrap();
        assert!(!format!("{uri:?}").contains("Secret"));
    }

    proptest! {
        #[test]
        fn any_valid_key_round_trips(secret in any::<[u8; 32]>()) {
            if let Ok(signing) = SigningKey::from_bytes(&secret) {
                let address = Address::from_key(signing.verifying_key());
                prop_assert_eq!(Address::parse(&address.to_string()), Ok(address));
                prop_assert_eq!(Uri::parse(&address.to_uri()).map(|u| *u.address()), Ok(address));
            }
        }

        #[test]
        fn any_name_round_trips_through_a_uri(name in "\\PC{1,20}") {
            let address = Address::from_key(key(14));
            if let Ok(uri) = Uri::new(address, Some(&name)) {
                let parsed = Uri::parse(&uri.to_string()).unwrap();
                prop_assert_eq!(parsed.name(), Some(name.as_str()));
            }
        }

        #[test]
        fn parsing_arbitrary_strings_never_panics(s in "\\PC{0,120}") {
            let _ = Address::parse(&s);
            let _ = Uri::parse(&s);
            let _ = Uri::parse(&format!("xchat:{s}"));
        }
    }
}
