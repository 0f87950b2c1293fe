//! The normaliser against hand-made and serde-made msgpackr payloads.

use super::*;
use serde::{Deserialize, Serialize};

/// Normalises `input` and expects success.
fn ok(input: &[u8]) -> Vec<u8> {
    match normalize(input) {
        Ok(out) => out,
        Err(err) => panic!("normalize({input:02x?}) failed: {err}"),
    }
}

/// Asserts that `input` passes through unchanged.
fn passthrough(input: &[u8]) {
    assert_eq!(ok(input), input, "input {input:02x?}");
}

/// A small deterministic xorshift generator, so the garbage tests are reproducible.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next_u64() % n).unwrap()
    }
}

/// `{x:1,y:2}` as msgpackr's `Packr` writes it.
const XY_RECORD: &[u8] = &[0xd4, 0x72, 0x40, 0x92, 0xa1, b'x', 0xa1, b'y', 0x01, 0x02];

/// `[{x:1},{x:100}]` as msgpackr's `Packr` writes it.
const TWO_RECORDS: &[u8] = &[0x92, 0xd4, 0x72, 0x40, 0x91, 0xa1, b'x', 0x01, 0x40, 0xcc, 0x64];

/// `{a:{b:[{c:1},{c:2}]}, d:undefined}` as msgpackr's `Packr` writes it, with three records.
const NESTED: &[u8] = &[
    0xd4, 0x72, 0x40, 0x92, 0xa1, b'a', 0xa1, b'd', // outer record, keys a and d
    0xd4, 0x72, 0x41, 0x91, 0xa1, b'b', // a: record with key b
    0x92, // b: an array of two records
    0xd4, 0x72, 0x42, 0x91, 0xa1, b'c', 0x01, // {c:1}
    0x42, 0x02, // {c:2}
    0xd4, 0x00, 0x00, // d: undefined
];

#[test]
fn an_absolute_cap_bounds_the_expansion() {
    // One record definition with a 100-byte key, then 2999 references repeating it: about
    // 51 times larger once expanded, within the relative limit.
    let mut input = vec![0xdd, 0, 0, 0x0b, 0xb8];
    input.extend([0xd4, 0x72, 0x40, 0x91, 0xd9, 100]);
    input.extend([b'k'; 100]);
    input.push(0x01);
    for _ in 0..2999 {
        input.extend([0x40, 0x01]);
    }
    let full = normalize(&input).expect("within the relative limit");
    assert!(full.len() > 300_000, "{}", full.len());
    assert_eq!(normalize_within(&input, 1 << 20).as_deref(), Ok(&full[..]));
    assert_eq!(normalize_within(&input, 100_000), Err(MsgpackError::TooLarge(100_000)));
}

#[test]
fn expands_a_record_definition() {
    assert_eq!(ok(XY_RECORD), [0x82, 0xa1, b'x', 0x01, 0xa1, b'y', 0x02]);
}

#[test]
fn expands_a_record_reference() {
    assert_eq!(ok(TWO_RECORDS), [0x92, 0x81, 0xa1, b'x', 0x01, 0x81, 0xa1, b'x', 0xcc, 0x64]);
}

#[test]
fn expands_nested_records_and_undefined() {
    assert_eq!(
        ok(NESTED),
        [
            0x82, 0xa1, b'a', // outer map
            0x81, 0xa1, b'b', // a
            0x92, 0x81, 0xa1, b'c', 0x01, 0x81, 0xa1, b'c', 0x02, // b
            0xa1, b'd', 0xc0, // d: nil
        ]
    );
}

#[test]
fn expands_a_record_whose_value_refers_to_its_own_definition() {
    // `{a:{a:1}}`: msgpackr registers the outer definition before writing its values.
    let input = [0xd4, 0x72, 0x40, 0x91, 0xa1, b'a', 0x40, 0x01];
    assert_eq!(ok(&input), [0x81, 0xa1, b'a', 0x81, 0xa1, b'a', 0x01]);
}

#[test]
fn expands_records_inside_map_values_and_keys() {
    // `{"p": {x:1}, <ref {x:2}>: 3}`: a plain map with a record as a value and as a key.
    let input = [0x82, 0xa1, b'p', 0xd4, 0x72, 0x40, 0x91, 0xa1, b'x', 0x01, 0x40, 0x02, 0x03];
    assert_eq!(ok(&input), [0x82, 0xa1, b'p', 0x81, 0xa1, b'x', 0x01, 0x81, 0xa1, b'x', 0x02, 0x03,]);
}

#[test]
fn a_redefinition_replaces_the_previous_record() {
    let input = [
        0x93, // [{x:1}, {y:2}, ref {y:3}]
        0xd4, 0x72, 0x40, 0x91, 0xa1, b'x', 0x01, //
        0xd4, 0x72, 0x40, 0x91, 0xa1, b'y', 0x02, //
        0x40, 0x03,
    ];
    assert_eq!(ok(&input), [0x93, 0x81, 0xa1, b'x', 0x01, 0x81, 0xa1, b'y', 0x02, 0x81, 0xa1, b'y', 0x03,]);
}

#[test]
fn a_redefinition_inside_a_record_does_not_change_its_remaining_keys() {
    // The outer record (keys a, b) redefines its own id in the value of a; b still follows.
    let input = [
        0xd4, 0x72, 0x40, 0x92, 0xa1, b'a', 0xa1, b'b', //
        0xd4, 0x72, 0x40, 0x91, 0xa1, b'z', 0x01, // a: {z:1}, now id 0x40
        0x02, // b
    ];
    assert_eq!(ok(&input), [0x82, 0xa1, b'a', 0x81, 0xa1, b'z', 0x01, 0xa1, b'b', 0x02]);
}

#[test]
fn definitions_do_not_outlive_a_call() {
    ok(XY_RECORD);
    passthrough(&[0x40]);
}

#[test]
fn undefined_becomes_nil() {
    assert_eq!(ok(&[0xd4, 0x00, 0x00]), [0xc0]);
    assert_eq!(ok(&[0x92, 0xd4, 0x00, 0x00, 0x01]), [0x92, 0xc0, 0x01]);
}

#[test]
fn records_get_the_smallest_map_header() {
    fn header_len(out: &[u8]) -> usize {
        match out[0] {
            0x80..=0x8f => 1,
            0xde => 3,
            0xdf => 5,
            marker => panic!("not a map header: {marker:#x}"),
        }
    }
    let record = |count: usize| {
        let mut input = vec![0xd4, 0x72, 0x40, 0xdd];
        input.extend_from_slice(&u32::try_from(count).unwrap().to_be_bytes());
        input.extend(std::iter::repeat_n(0xa0, count)); // empty-string keys
        input.extend(std::iter::repeat_n(0xc0, count)); // nil values
        let out = ok(&input);
        assert_eq!(out.len() - 2 * count, header_len(&out));
        out
    };
    assert_eq!(record(0)[0], 0x80);
    assert_eq!(record(15)[0], 0x8f);
    assert_eq!(record(16)[..3], [0xde, 0x00, 0x10]);
    assert_eq!(record(65_535)[..3], [0xde, 0xff, 0xff]);
    assert_eq!(record(65_536)[..5], [0xdf, 0x00, 0x01, 0x00, 0x00]);
}

#[test]
fn output_decodes_as_plain_msgpack() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct P {
        x: i64,
        y: i64,
    }
    let out = ok(XY_RECORD);
    let p: P = rmp_serde::from_slice(&out).unwrap();
    assert_eq!(p, P { x: 1, y: 2 });

    // `[{x:1,y:2},{x:100,y:-3}]`, the second a reference.
    let mut input = vec![0x92];
    input.extend_from_slice(XY_RECORD);
    input.extend_from_slice(&[0x40, 0xcc, 0x64, 0xfd]);
    let ps: Vec<P> = rmp_serde::from_slice(&ok(&input)).unwrap();
    assert_eq!(ps, [P { x: 1, y: 2 }, P { x: 100, y: -3 }]);
}

#[test]
fn plain_scalars_pass_through() {
    let cases: &[&[u8]] = &[
        &[0xc0],
        &[0xc2],
        &[0xc3],
        &[0x00],
        &[0x3f],
        &[0xe0],
        &[0xff],
        &[0xcc, 0xff],
        &[0xcd, 0x12, 0x34],
        &[0xce, 0x12, 0x34, 0x56, 0x78],
        &[0xcf, 1, 2, 3, 4, 5, 6, 7, 8],
        &[0xd0, 0x80],
        &[0xd1, 0x80, 0x00],
        &[0xd2, 0x80, 0, 0, 0],
        &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
        &[0xca, 0x3f, 0x80, 0x00, 0x00],
        &[0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
    ];
    for case in cases {
        passthrough(case);
    }
}

#[test]
fn fixints_0x40_to_0x7f_pass_through_without_a_definition() {
    for byte in 0x40..=0x7f {
        passthrough(&[byte]);
        passthrough(&[0x91, byte]);
    }
    // `[64]`, and a record with another id does not make 0x40 a reference.
    passthrough(&[0x91, 0x40]);
    let mut input = vec![0x92];
    input.extend_from_slice(&[0xd4, 0x72, 0x41, 0x91, 0xa1, b'x', 0x01]);
    input.push(0x40);
    assert_eq!(ok(&input), [0x92, 0x81, 0xa1, b'x', 0x01, 0x40], "0x40 with only 0x41 defined");
}

#[test]
fn strings_and_binaries_pass_through() {
    let long = vec![b'a'; 300];
    let mut cases = vec![
        vec![0xa0],
        vec![0xa3, b'a', b'b', b'c'],
        vec![0xd9, 0x02, b'h', b'i'],
        vec![0xc4, 0x02, 0x40, 0xd4],
        vec![0xc5, 0x00, 0x01, 0x72],
        vec![0xc6, 0x00, 0x00, 0x00, 0x01, 0xc1],
        vec![0xdb, 0x00, 0x00, 0x00, 0x01, b'z'],
    ];
    let mut str16 = vec![0xda, 0x01, 0x2c];
    str16.extend_from_slice(&long);
    cases.push(str16);
    let mut bin16 = vec![0xc5, 0x01, 0x2c];
    bin16.extend_from_slice(&long);
    cases.push(bin16);
    for case in &cases {
        passthrough(case);
    }
}

#[test]
fn other_extensions_pass_through() {
    let cases: &[&[u8]] = &[
        &[0xd4, 0x01, 0x72],
        &[0xd4, 0xff, 0x00],
        &[0xd5, 0x01, 0xaa, 0xbb],
        &[0xd6, 0xff, 1, 2, 3, 4],
        &[0xd7, 0xff, 1, 2, 3, 4, 5, 6, 7, 8],
        &[0xd8, 0x05, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        &[0xc7, 0x00, 0x05],
        &[0xc7, 0x03, 0x00, 1, 2, 3],
        &[0xc8, 0x00, 0x02, 0x10, 1, 2],
        &[0xc9, 0x00, 0x00, 0x00, 0x01, 0x10, 1],
    ];
    for case in cases {
        passthrough(case);
    }
}

#[test]
fn containers_pass_through() {
    let cases: &[&[u8]] = &[
        &[0x90],
        &[0x80],
        &[0x92, 0x40, 0x7f],
        &[0x81, 0x40, 0x41],
        &[0xdc, 0x00, 0x02, 0x01, 0x02],
        &[0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0],
        &[0xde, 0x00, 0x01, 0xa1, b'k', 0x90],
        &[0xdf, 0x00, 0x00, 0x00, 0x01, 0x01, 0x80],
        &[0x82, 0x91, 0x01, 0xc3, 0x81, 0xc0, 0xc0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    for case in cases {
        passthrough(case);
    }
}

#[test]
fn rmp_serde_output_passes_through() {
    #[derive(Serialize)]
    struct Everything {
        unit: (),
        flag: bool,
        small: Vec<u8>,
        ints: Vec<i64>,
        floats: (f32, f64),
        text: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        nested: Vec<Option<Vec<u16>>>,
    }
    let value = Everything {
        unit: (),
        flag: true,
        small: (0..=255).collect(),
        ints: vec![i64::MIN, -129, -33, -1, 0, 64, 127, 128, 65_536, i64::MAX],
        floats: (1.5, -2.25),
        text: "é".repeat(200),
        bytes: vec![0x72; 70_000],
        nested: vec![None, Some(vec![]), Some(vec![64, 1000])],
    };
    passthrough(&rmp_serde::to_vec(&value).unwrap());
    passthrough(&rmp_serde::to_vec_named(&value).unwrap());
}

#[test]
fn empty_input_is_truncated() {
    assert_eq!(normalize(&[]), Err(MsgpackError::Truncated));
}

#[test]
fn every_prefix_of_a_record_message_is_truncated() {
    let mut messages = vec![XY_RECORD.to_vec(), TWO_RECORDS.to_vec(), NESTED.to_vec()];
    let mut str16 = vec![0x91, 0xda, 0x00, 0x03];
    str16.extend_from_slice(b"abc");
    messages.push(str16);
    for message in &messages {
        ok(message);
        for len in 0..message.len() {
            assert_eq!(
                normalize(&message[..len]),
                Err(MsgpackError::Truncated),
                "prefix {:02x?}",
                &message[..len]
            );
        }
    }
}

#[test]
fn hostile_lengths_are_truncated() {
    let cases: &[&[u8]] = &[
        &[0xdb, 0xff, 0xff, 0xff, 0xff],
        &[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
        &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0],
        &[0xd4, 0x72, 0x40, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xa0],
    ];
    for case in cases {
        assert_eq!(normalize(case), Err(MsgpackError::Truncated), "{case:02x?}");
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    assert_eq!(normalize(&[0xc0, 0xc0]), Err(MsgpackError::Trailing));
    let mut input = XY_RECORD.to_vec();
    input.push(0x40);
    assert_eq!(normalize(&input), Err(MsgpackError::Trailing));
}

#[test]
fn nesting_is_capped() {
    let nested = |depth: usize, open: &[u8], close: &[u8]| {
        let mut input = open.repeat(depth - 1);
        input.extend_from_slice(close);
        normalize(&input)
    };
    let too_deep = Err(MsgpackError::Malformed("nesting too deep"));

    assert!(nested(MAX_DEPTH, &[0x91], &[0x90]).is_ok());
    assert_eq!(nested(MAX_DEPTH + 1, &[0x91], &[0x90]), too_deep);
    assert!(nested(MAX_DEPTH, &[0x81, 0xc0], &[0x80]).is_ok());
    assert_eq!(nested(MAX_DEPTH + 1, &[0x81, 0xc0], &[0x80]), too_deep);
    assert_eq!(nested(100_000, &[0x91], &[0x90]), too_deep);

    // A record nested in its own value counts too, by definition and by reference.
    let mut records = vec![0xd4, 0x72, 0x40, 0x91, 0xa1, b'a'];
    records.extend(std::iter::repeat_n(0x40, MAX_DEPTH - 1));
    records.push(0x01);
    assert!(normalize(&records).is_ok());
    records.insert(6, 0x40);
    assert_eq!(normalize(&records), too_deep);
}

#[test]
fn malformed_inputs_are_rejected() {
    let cases: &[(&[u8], &str)] = &[
        (&[0xc1], "reserved marker 0xc1"),
        (&[0x91, 0xc1], "reserved marker 0xc1"),
        (&[0xd4, 0x72, 0x3f, 0x91, 0xa1, b'x', 0x01], "record id outside 0x40..=0x7f"),
        (&[0xd4, 0x72, 0x80, 0x91, 0xa1, b'x', 0x01], "record id outside 0x40..=0x7f"),
        (&[0xd4, 0x72, 0x40, 0x81, 0xa1, b'x', 0x01], "record keys are not an array"),
        (&[0xd5, 0x72, 0x40, 0x00], "record extension outside a fixext1 header"),
        (&[0xc7, 0x01, 0x72, 0x40], "record extension outside a fixext1 header"),
    ];
    for (input, reason) in cases {
        assert_eq!(normalize(input), Err(MsgpackError::Malformed(reason)), "{input:02x?}");
    }
}

#[test]
fn quadratic_expansion_is_refused() {
    // One 4 KiB key and 50,000 two-byte references would expand to about 200 MiB.
    let refs = 50_000;
    let mut input = vec![0xdd];
    input.extend_from_slice(&u32::try_from(refs + 1).unwrap().to_be_bytes());
    input.extend_from_slice(&[0xd4, 0x72, 0x40, 0x91, 0xda, 0x10, 0x00]);
    input.extend(std::iter::repeat_n(b'k', 4096));
    input.push(0xc0);
    for _ in 0..refs {
        input.extend_from_slice(&[0x40, 0xc0]);
    }
    let limit = input.len() * MAX_EXPANSION;
    assert_eq!(normalize(&input), Err(MsgpackError::TooLarge(limit)));

    // The same shape with few references stays within the limit.
    let mut small = vec![0x94, 0xd4, 0x72, 0x40, 0x91, 0xda, 0x10, 0x00];
    small.extend(std::iter::repeat_n(b'k', 4096));
    small.push(0xc0);
    small.extend_from_slice(&[0x40, 0xc0, 0x40, 0xc0, 0x40, 0xc0]);
    assert_eq!(ok(&small).len(), 1 + 4 * (1 + 3 + 4096 + 1));
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Bytes biased towards markers that start containers and records, so that random inputs
    // reach deep into the parser rather than failing on the first byte.
    let alphabet = [
        0x40, 0x41, 0x7f, 0x91, 0x92, 0x81, 0xdc, 0xdd, 0xde, 0xdf, 0xd4, 0x72, 0x00, 0xa1, 0xc0, 0xc7, 0xd5,
        0xd9, 0xda, 0xff, 0x01,
    ];
    for _ in 0..50_000 {
        let len = rng.below(48);
        let input: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(2) == 0 {
                    alphabet[rng.below(alphabet.len() as u64)]
                } else {
                    rng.next_u64() as u8
                }
            })
            .collect();
        let _ = normalize(&input);
    }
    // Every single-byte corruption of a valid message is handled too.
    for message in [XY_RECORD, TWO_RECORDS, NESTED] {
        for i in 0..message.len() {
            for byte in 0..=u8::MAX {
                let mut input = message.to_vec();
                input[i] = byte;
                let _ = normalize(&input);
            }
        }
    }
}
