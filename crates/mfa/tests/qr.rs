//! Enrollment QR codes: PNG structure and a decode round trip (rqrr), terminal rendering
//! shape and round trip, nothing secret in `Debug`.
#![cfg(feature = "qr")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_core::SecretString;
use mcpsec_mfa::{EnrollmentQr, PendingEnrollment, QUIET_ZONE, TotpConfig};

fn enrollment() -> PendingEnrollment {
    PendingEnrollment::begin(TotpConfig::default(), "Example Co", "ada@example.com").unwrap()
}

/// Decodes a square bitmap (`true` = dark) with rqrr; exactly one code expected.
fn decode(side: usize, dark: impl Fn(usize, usize) -> bool) -> String {
    let mut image = rqrr::PreparedImage::prepare_from_bitmap(side, side, dark);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().unwrap())
}

/// Parses the PNG this crate writes: checks signature, chunk CRCs, IHDR, and inflates the
/// stored deflate blocks (checking the Adler-32). Returns (side, scanlines).
fn parse_png(png: &[u8]) -> (usize, Vec<u8>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut at = 8;
    let mut chunks = Vec::new();
    while at < png.len() {
        let len = be32(&png[at..at + 4]) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        let crc = be32(&png[at + 8 + len..at + 12 + len]);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(kind);
        hasher.update(data);
        assert_eq!(hasher.finalize(), crc, "chunk CRC");
        chunks.push((kind.to_vec(), data.to_vec()));
        at += 12 + len;
    }
    let kinds: Vec<&[u8]> = chunks.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(kinds, [b"IHDR".as_slice(), b"IDAT", b"IEND"]);
    let ihdr = &chunks[0].1;
    assert_eq!(ihdr.len(), 13);
    let (w, h) = (be32(&ihdr[..4]), be32(&ihdr[4..8]));
    assert_eq!(w, h);
    assert_eq!(
        &ihdr[8..],
        &[1, 0, 0, 0, 0],
        "1-bit greyscale, no interlace"
    );
    let zlib = &chunks[1].1;
    assert_eq!(&zlib[..2], &[0x78, 0x01]);
    assert_eq!((u16::from(zlib[0]) << 8 | u16::from(zlib[1])) % 31, 0);
    let mut at = 2;
    let mut raw = Vec::new();
    loop {
        let last = zlib[at] & 1 == 1;
        assert_eq!(zlib[at] >> 1, 0, "stored block");
        let len = u16::from_le_bytes([zlib[at + 1], zlib[at + 2]]);
        let nlen = u16::from_le_bytes([zlib[at + 3], zlib[at + 4]]);
        assert_eq!(len, !nlen);
        raw.extend_from_slice(&zlib[at + 5..at + 5 + len as usize]);
        at += 5 + len as usize;
        if last {
            break;
        }
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    assert_eq!(be32(&zlib[at..at + 4]), (b << 16) | a, "Adler-32");
    assert_eq!(at + 4, zlib.len());
    (w as usize, raw)
}

#[test]
fn png_decodes_to_the_enrollment_uri() {
    let pending = enrollment();
    let qr = pending.qr().unwrap();
    let scale = 4;
    let png = qr.to_png(scale).unwrap();
    let (side, raw) = parse_png(png.expose_secret());
    assert_eq!(side, (qr.width() + 2 * QUIET_ZONE) * scale as usize);
    let row = side.div_ceil(8) + 1;
    assert_eq!(raw.len(), row * side);
    assert!(raw.chunks(row).all(|r| r[0] == 0), "filter type none");
    let uri = decode(side, |x, y| {
        raw[y * row + 1 + x / 8] & (0x80 >> (x % 8)) == 0
    });
    assert_eq!(uri, pending.uri().expose_secret());
}

#[test]
fn png_quiet_zone_is_white_and_scale_is_checked() {
    let qr = enrollment().qr().unwrap();
    let png = qr.to_png(1).unwrap();
    let (side, raw) = parse_png(png.expose_secret());
    let row = side.div_ceil(8) + 1;
    let pixel = |x: usize, y: usize| raw[y * row + 1 + x / 8] & (0x80 >> (x % 8)) != 0;
    for i in 0..side {
        for q in 0..QUIET_ZONE {
            assert!(pixel(i, q) && pixel(q, i) && pixel(i, side - 1 - q) && pixel(side - 1 - q, i));
        }
    }
    assert!(qr.to_png(0).is_err());
    assert!(qr.to_png(33).is_err());
}

#[test]
fn terminal_rendering_has_quiet_zone_colours_and_decodes() {
    let pending = enrollment();
    let qr = pending.qr().unwrap();
    let text = qr.to_terminal();
    let side = qr.width() + 2 * QUIET_ZONE;
    let lines: Vec<&str> = text.expose_secret().lines().collect();
    assert_eq!(lines.len(), side.div_ceil(2));
    let mut grid = vec![vec![false; side]; side + 1];
    for (i, line) in lines.iter().enumerate() {
        let body = line
            .strip_prefix("\x1b[30;107m")
            .and_then(|l| l.strip_suffix("\x1b[0m"))
            .expect("explicit colours and a reset on every line");
        let cells: Vec<char> = body.chars().collect();
        assert_eq!(cells.len(), side);
        for (x, c) in cells.into_iter().enumerate() {
            let (top, bottom) = match c {
                ' ' => (false, false),
                '▀' => (true, false),
                '▄' => (false, true),
                '█' => (true, true),
                other => panic!("unexpected {other:?}"),
            };
            grid[2 * i][x] = top;
            grid[2 * i + 1][x] = bottom;
        }
    }
    assert!(
        lines[0].chars().all(|c| !matches!(c, '▀' | '▄' | '█')),
        "quiet zone"
    );
    // Scale the module grid up so the detector has pixels to work with.
    let uri = decode(side * 4, |x, y| grid[y / 4][x / 4]);
    assert_eq!(uri, pending.uri().expose_secret());
}

#[test]
fn debug_shows_no_modules() {
    let qr = enrollment().qr().unwrap();
    let debug = format!("{qr:?}");
    assert!(debug.starts_with("EnrollmentQr { width: "), "{debug}");
    assert!(!debug.contains("true") && !debug.contains("otpauth"));
}

#[test]
fn oversized_input_is_refused() {
    let long = SecretString::new("x".repeat(2049));
    assert!(EnrollmentQr::encode(&long).is_err());
}
