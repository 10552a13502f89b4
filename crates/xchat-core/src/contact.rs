//! The contact book: who the user talks to, under which name, and whether
//! they checked the contact's safety number.
//!
//! A contact is known by a local id that never changes, a name the user
//! chose, and the identity key of the address they added. Adding another
//! address under an existing name is a **key change**: the contact keeps its
//! history, its verification is reset, and sending to it is blocked until
//! the user acknowledges the change (after comparing safety numbers, ideally).
//! A key is never replaced silently.

use std::collections::BTreeMap;

use rand_core::CryptoRng;
use xchat_crypto::address::Address;
use xchat_crypto::signature::VerifyingKey;

use crate::time::UnixMillis;

/// Longest contact name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// Most contacts one profile holds.
pub const MAX_CONTACTS: usize = 100_000;

/// A contact's local, stable id (random; never sent to anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContactId(pub [u8; 16]);

/// A contact, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The local id.
    pub id: ContactId,
    /// The name the user gave, unique in the book.
    pub name: String,
    /// The identity key of the contact's address.
    pub identity: VerifyingKey,
    /// Whether the user marked the safety number of this identity as checked.
    pub verified: bool,
    /// The identity this contact had before a key change the user has not
    /// acknowledged yet. While set, nothing is sent to the contact.
    pub unacknowledged_change: Option<VerifyingKey>,
    /// When the contact was added.
    pub added_at: UnixMillis,
}

impl Contact {
    /// The contact's address, as text.
    pub fn address(&self) -> Address {
        Address::from_key(self.identity)
    }
}

/// What adding a contact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new contact.
    New(ContactId),
    /// The name and address were already in the book together: nothing changed.
    Unchanged(ContactId),
    /// The name was known with another address: the key changed, and sending
    /// is blocked until the user acknowledges it.
    KeyChanged(ContactId),
}

/// Every contact of a profile, indexed by id, name and identity.
#[derive(Debug, Default)]
pub struct ContactBook {
    contacts: BTreeMap<ContactId, Contact>,
    by_name: BTreeMap<String, ContactId>,
    by_identity: BTreeMap<[u8; 32], ContactId>,
}

impl ContactBook {
    /// A book holding `contacts`, as loaded from the store.
    ///
    /// # Errors
    /// [`ContactError::DuplicateName`] or [`ContactError::AddressTaken`] when
    /// two records clash (a corrupt store).
    pub fn from_records(contacts: impl IntoIterator<Item = Contact>) -> Result<Self, ContactError> {
        let mut book = Self::default();
        for contact in contacts {
            if book.by_name.contains_key(&contact.name) {
                return Err(ContactError::DuplicateName);
            }
            if book.by_identity.contains_key(&contact.identity.to_bytes()) {
                return Err(ContactError::AddressTaken);
            }
            book.index(contact);
        }
        Ok(book)
    }

    fn index(&mut self, contact: Contact) {
        self.by_name.insert(contact.name.clone(), contact.id);
        self.by_identity.insert(contact.identity.to_bytes(), contact.id);
        self.contacts.insert(contact.id, contact);
    }

    /// Adds `address` under `name`, or changes the key of the contact called
    /// `name` (see the module doc).
    ///
    /// # Errors
    /// [`ContactError::InvalidName`] for an empty, too long or control-laden
    /// name; [`ContactError::AddressTaken`] when another contact already has
    /// this address; [`ContactError::TooManyContacts`].
    pub fn add(
        &mut self,
        name: &str,
        address: &Address,
        now: UnixMillis,
        rng: &mut impl CryptoRng,
    ) -> Result<Added, ContactError> {
        let name = validate_name(name)?;
        let identity = *address.key();
        let owner = self.by_identity.get(&identity.to_bytes()).copied();
        match (self.by_name.get(&name).copied(), owner) {
            (Some(id), Some(owner)) if id == owner => Ok(Added::Unchanged(id)),
            (_, Some(_)) => Err(ContactError::AddressTaken),
            (Some(id), None) => {
                let contact = self.contacts.get_mut(&id).ok_or(ContactError::Internal)?;
                let previous = contact.identity;
                self.by_identity.remove(&previous.to_bytes());
                contact.identity = identity;
                contact.verified = false;
                // The first unacknowledged key is the one the user knew.
                contact.unacknowledged_change.get_or_insert(previous);
                self.by_identity.insert(identity.to_bytes(), id);
                Ok(Added::KeyChanged(id))
            }
            (None, None) => {
                if self.contacts.len() >= MAX_CONTACTS {
                    return Err(ContactError::TooManyContacts);
                }
                let mut id = [0u8; 16];
                rng.fill_bytes(&mut id);
                let id = ContactId(id);
                self.index(Contact {
                    id,
                    name,
                    identity,
                    verified: false,
                    unacknowledged_change: None,
                    added_at: now,
                });
                Ok(Added::New(id))
            }
        }
    }

    /// Marks the contact's current identity as verified (the user compared
    /// safety numbers), which also acknowledges a key change.
    ///
    /// # Errors
    /// [`ContactError::Unknown`].
    pub fn verify(&mut self, id: ContactId) -> Result<&Contact, ContactError> {
        let contact = self.contacts.get_mut(&id).ok_or(ContactError::Unknown)?;
        contact.verified = true;
        contact.unacknowledged_change = None;
        Ok(contact)
    }

    /// Acknowledges a key change without verifying: sending is allowed again.
    ///
    /// # Errors
    /// [`ContactError::Unknown`].
    pub fn acknowledge_key_change(&mut self, id: ContactId) -> Result<&Contact, ContactError> {
        let contact = self.contacts.get_mut(&id).ok_or(ContactError::Unknown)?;
        contact.unacknowledged_change = None;
        Ok(contact)
    }

    /// Whether the user may send to the contact now.
    ///
    /// # Errors
    /// [`ContactError::Unknown`]; [`ContactError::KeyChangeNotAcknowledged`].
    pub fn check_can_send(&self, id: ContactId) -> Result<&Contact, ContactError> {
        let contact = self.get(id).ok_or(ContactError::Unknown)?;
        if contact.unacknowledged_change.is_some() {
            return Err(ContactError::KeyChangeNotAcknowledged);
        }
        Ok(contact)
    }

    /// The contact with this id.
    pub fn get(&self, id: ContactId) -> Option<&Contact> {
        self.contacts.get(&id)
    }

    /// The contact called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Contact> {
        self.by_name.get(name).and_then(|id| self.contacts.get(id))
    }

    /// The contact whose identity key is `identity`.
    pub fn by_identity(&self, identity: &VerifyingKey) -> Option<&Contact> {
        self.by_identity.get(&identity.to_bytes()).and_then(|id| self.contacts.get(id))
    }

    /// Every contact, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> {
        self.contacts.values()
    }

    /// How many contacts the book holds.
    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }
}

/// Trims a name and checks it: 1 to [`MAX_NAME_BYTES`] bytes, no control or
/// bidirectional-override characters (which could disguise one name as
/// another).
fn validate_name(name: &str) -> Result<String, ContactError> {
    let name = name.trim();
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.chars().any(|c| c.is_control() || bidi(c))
    {
        return Err(ContactError::InvalidName { max: MAX_NAME_BYTES });
    }
    Ok(name.to_owned())
}

/// Why a contact operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// No such contact.
    #[error("unknown contact")]
    Unknown,
    /// The name is empty, too long, or holds control characters.
    #[error("a contact name has 1 to {max} bytes and no control characters")]
    InvalidName {
        /// The longest name allowed.
        max: usize,
    },
    /// Another contact already has this address.
    #[error("another contact already has this address")]
    AddressTaken,
    /// Two stored contacts have the same name.
    #[error("two contacts have the same name")]
    DuplicateName,
    /// The contact's key changed and the user has not acknowledged it.
    #[error("the contact's key changed: compare safety numbers, then acknowledge the change")]
    KeyChangeNotAcknowledged,
    /// The book is full.
    #[error("too many contacts")]
    TooManyContacts,
    /// A broken invariant of the book.
    #[error("internal error in the contact book")]
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use xchat_crypto::signature::SigningKey;

    fn address(rng: &mut ChaCha20Rng) -> Address {
        Address::from_key(SigningKey::generate(rng).verifying_key())
    }

    #[test]
    fn adding_the_same_contact_twice_changes_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut book = ContactBook::default();
        let bob = address(&mut rng);
        let Added::New(id) = book.add("Bob", &bob, UnixMillis(1), &mut rng).unwrap() else {
            panic!("a new contact");
        };
        assert_eq!(book.add(" Bob ", &bob, UnixMillis(2), &mut rng), Ok(Added::Unchanged(id)));
        assert_eq!(book.len(), 1);
        assert!(book.check_can_send(id).is_ok());
    }

    #[test]
    fn a_new_address_under_a_known_name_is_a_key_change_that_blocks_sending() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut book = ContactBook::default();
        let (old, new) = (address(&mut rng), address(&mut rng));
        let Added::New(id) = book.add("Bob", &old, UnixMillis(1), &mut rng).unwrap() else {
            panic!("a new contact");
        };
        book.verify(id).unwrap();
        assert_eq!(book.add("Bob", &new, UnixMillis(2), &mut rng), Ok(Added::KeyChanged(id)));
        let contact = book.get(id).unwrap();
        assert!(!contact.verified, "a new key is not verified");
        assert_eq!(contact.unacknowledged_change, Some(*old.key()));
        assert_eq!(book.check_can_send(id).err(), Some(ContactError::KeyChangeNotAcknowledged));
        assert!(book.by_identity(old.key()).is_none());
        assert_eq!(book.by_identity(new.key()).map(|c| c.id), Some(id));

        book.acknowledge_key_change(id).unwrap();
        assert!(book.check_can_send(id).is_ok());
        assert!(!book.get(id).unwrap().verified);
    }

    #[test]
    fn an_address_belongs_to_one_contact() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut book = ContactBook::default();
        let bob = address(&mut rng);
        book.add("Bob", &bob, UnixMillis(1), &mut rng).unwrap();
        assert_eq!(
            book.add("Robert", &bob, UnixMillis(2), &mut rng),
            Err(ContactError::AddressTaken)
        );
    }

    #[test]
    fn names_are_checked() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut book = ContactBook::default();
        let bob = address(&mut rng);
        for bad in ["", "   ", "a\nb", "evil\u{202e}txt", &"x".repeat(MAX_NAME_BYTES + 1)] {
            assert_eq!(
                book.add(bad, &bob, UnixMillis(1), &mut rng),
                Err(ContactError::InvalidName { max: MAX_NAME_BYTES }),
                "{bad:?}"
            );
        }
        assert!(book.add(&"é".repeat(MAX_NAME_BYTES / 2), &bob, UnixMillis(1), &mut rng).is_ok());
    }

    #[test]
    fn book_round_trips_through_its_records() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut book = ContactBook::default();
        for name in ["Alice", "Bob", "Carol"] {
            let address = address(&mut rng);
            book.add(name, &address, UnixMillis(1), &mut rng).unwrap();
        }
        let restored = ContactBook::from_records(book.iter().cloned()).unwrap();
        assert_eq!(restored.iter().collect::<Vec<_>>(), book.iter().collect::<Vec<_>>());
        let twice = book.iter().cloned().chain(book.iter().take(1).cloned());
        assert!(ContactBook::from_records(twice).is_err());
    }
}
