//! `xchat contact add | list | verify`: the contact book of a running
//! node, through its API. Contacts are named by the user's name for them.

use std::io::{BufRead as _, Write as _};

use serde::Deserialize;
use serde_json::json;
use xchat_crypto::address::{URI_SCHEME, Uri};

use crate::Failure;
use crate::client::{self, Client, Contact};
use crate::conversation::printable;

/// `POST /api/v1/contacts`'s answer.
#[derive(Debug, Deserialize)]
struct Added {
    id: String,
    outcome: String,
}

/// A safety number, as the API gives it.
#[derive(Debug, Deserialize)]
struct SafetyNumber {
    groups: Vec<String>,
}

/// The address in `given`: an address as is (the node checks it), or the
/// address of an `xchat:` URI.
pub(crate) fn address_of(given: &str) -> Result<String, Failure> {
    let is_uri =
        given.split_once(':').is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case(URI_SCHEME));
    if !is_uri {
        return Ok(given.trim().to_owned());
    }
    let uri = Uri::parse(given.trim())
        .map_err(|e| Failure::new(format!("not an xchat address or URI: {e}")))?;
    Ok(uri.address().to_string())
}

/// `xchat contact add NAME ADDRESS`.
pub(crate) fn add(client: &Client, name: &str, address: &str, json: bool) -> Result<(), Failure> {
    let address = address_of(address)?;
    let answer =
        client.post("/api/v1/contacts", Some(&json!({ "name": name, "address": address })))?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    let added: Added = client::decode(&answer)?;
    let name = printable(name);
    match added.outcome.as_str() {
        "new" => println!("Added {name}."),
        "unchanged" => println!("{name} was already a contact with this address: nothing changed."),
        "key_changed" => {
            println!("WARNING: {name} had another address: their key changed.");
            println!("Nothing is sent to them until you compare safety numbers:");
            println!("  xchat contact verify {name}");
        }
        other => println!("{name}: {other}."),
    }
    println!("  id {}", added.id);
    Ok(())
}

/// `xchat contact list`.
pub(crate) fn list(client: &Client, json: bool) -> Result<(), Failure> {
    let (answer, contacts) = client.contacts()?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    if contacts.is_empty() {
        println!("No contacts yet: add one with `xchat contact add NAME ADDRESS`.");
        return Ok(());
    }
    let width = contacts.iter().map(|c| printable(&c.name).chars().count()).max().unwrap_or(0);
    for contact in &contacts {
        println!("{:<width$}  {}  {}", printable(&contact.name), contact.address, marks(contact));
    }
    Ok(())
}

fn marks(contact: &Contact) -> &'static str {
    match (contact.key_changed, contact.verified) {
        (true, _) => "KEY CHANGED",
        (false, true) => "verified",
        (false, false) => "",
    }
}

/// `xchat contact verify NAME`.
pub(crate) fn verify(client: &Client, name: &str, yes: bool, json: bool) -> Result<(), Failure> {
    let contact = client.contact_named(name)?;
    let answer = client.get(&format!("/api/v1/contacts/{}/safety-number", contact.id))?;
    let number: SafetyNumber = client::decode(&answer)?;
    let shown = printable(name);
    if json {
        println!("{answer}");
    } else {
        println!("Safety number with {shown}:");
        println!();
        for row in number.groups.chunks(4) {
            println!("    {}", row.join(" "));
        }
        println!();
        println!(
            "Compare it with the one {shown}'s device shows, in person or on a call you trust."
        );
    }
    if !yes && !confirm(&format!("Do the numbers match? Mark {shown} verified [y/N] "))? {
        // Not verified is an answer, not a failure: nothing changes.
        if !json {
            println!("Not verified.");
        }
        return Ok(());
    }
    client.post(&format!("/api/v1/contacts/{}/verify", contact.id), None)?;
    if !json {
        println!("{shown} is verified.");
    }
    Ok(())
}

/// Asks `question` on standard error; only `y` or `yes` is a yes.
fn confirm(question: &str) -> Result<bool, Failure> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(format!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_address_is_passed_to_the_node_as_given() {
        assert_eq!(address_of(" xchat1abc ").unwrap(), "xchat1abc");
    }

    #[test]
    fn malformed_uri_is_refused() {
        assert!(address_of("xchat:nonsense").is_err());
        assert!(address_of("XCHAT:").is_err());
    }

    #[test]
    fn uri_gives_its_address() {
        let key = xchat_crypto::signature::SigningKey::generate(&mut rand_core::UnwrapErr(
            rand_core::OsRng,
        ));
        let address = xchat_crypto::address::Address::from_key(key.verifying_key());
        assert_eq!(address_of(&address.to_uri()).unwrap(), address.to_string());
        let named = format!("{}?name=Bob%20B", address.to_uri());
        assert_eq!(address_of(&named).unwrap(), address.to_string());
    }
}
