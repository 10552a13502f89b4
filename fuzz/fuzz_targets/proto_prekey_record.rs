//! Decodes and verifies arbitrary bytes as a prekey record; a record that
//! verifies must survive its round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchat_proto::bundle::UnverifiedPreKeyRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = UnverifiedPreKeyRecord::decode(data)
        && let Ok(verified) = record.verify(None)
    {
        let again = UnverifiedPreKeyRecord::decode(&verified.encode()).map(|r| r.verify(None));
        assert_eq!(again, Ok(Ok(verified)));
    }
});
