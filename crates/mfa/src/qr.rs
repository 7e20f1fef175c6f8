//! QR codes of an enrollment's `otpauth://` URI: for the terminal (Unicode half blocks)
//! and as a PNG.
//!
//! The URI holds the TOTP secret, so every rendering is secret material: show it once, to
//! the user enrolling, and never log or store it. The module matrix and the rendered
//! buffers are zeroized when dropped; the encoder's own intermediate buffers (inside the
//! `qrcode` crate) are not, which is as far as a safe-Rust encoder lets us go.

use crate::Error;
use mcpsec_core::{SecretBytes, SecretString};
use std::fmt::Write as _;
use zeroize::{Zeroize, Zeroizing};

/// Light modules around the code, in modules (the QR specification asks for four).
pub const QUIET_ZONE: usize = 4;
/// Largest PNG scale accepted, in pixels per module.
pub const MAX_PNG_SCALE: u32 = 32;
/// Longest text encoded (the URIs we build are far shorter).
const MAX_QR_INPUT: usize = 2048;

/// A QR code's modules (`true` is dark), without the quiet zone. Secret material when it
/// encodes an enrollment URI: `Debug` shows only the size, and the matrix is zeroized
/// when dropped.
pub struct EnrollmentQr {
    modules: Zeroizing<Vec<bool>>,
    width: usize,
}

impl std::fmt::Debug for EnrollmentQr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentQr")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl EnrollmentQr {
    /// Encodes `uri` (at most 2 KiB) with error correction level M.
    pub fn encode(uri: &SecretString) -> Result<Self, Error> {
        if uri.len() > MAX_QR_INPUT {
            return Err(Error::Config("QR input longer than 2 KiB"));
        }
        let code = qrcode::QrCode::with_error_correction_level(
            uri.expose_secret().as_bytes(),
            qrcode::EcLevel::M,
        )
        .map_err(|_| Error::Config("the URI does not fit in a QR code"))?;
        let width = code.width();
        let mut colors = code.into_colors();
        let modules = Zeroizing::new(
            colors
                .iter()
                .map(|c| *c == qrcode::Color::Dark)
                .collect::<Vec<_>>(),
        );
        // `Color` has no `Zeroize`: overwrite the encoder's matrix before it is freed.
        colors.fill(qrcode::Color::Light);
        std::hint::black_box(&colors);
        drop(colors);
        if modules.len() != width.saturating_mul(width) {
            return Err(Error::Config("QR encoder returned a malformed matrix"));
        }
        Ok(Self { modules, width })
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at (`x`, `y`) is dark; coordinates include the quiet zone
    /// (outside the code everything is light).
    fn dark(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        x < self.width
            && y < self.width
            && self
                .modules
                .get(y * self.width + x)
                .copied()
                .unwrap_or(false)
    }

    /// Modules per side including the quiet zone on both sides.
    fn full_width(&self) -> usize {
        self.width + 2 * QUIET_ZONE
    }

    /// The code for a terminal: two module rows per text line with Unicode half blocks
    /// (`▀ ▄ █`), a four-module quiet zone, and explicit colours (black on white, ANSI
    /// `30;107`) on every line so it scans on dark and light terminals alike. Each line
    /// ends with a reset (`ESC[0m`) and a newline; there are
    /// `(width + 8).div_ceil(2)` lines.
    pub fn to_terminal(&self) -> SecretString {
        let side = self.full_width();
        let mut out = String::with_capacity(side.div_ceil(2) * (side * 3 + 16));
        for y in (0..side).step_by(2) {
            out.push_str("\x1b[30;107m");
            for x in 0..side {
                out.push(match (self.dark(x, y), self.dark(x, y + 1)) {
                    (false, false) => ' ',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (true, true) => '█',
                });
            }
            let _ = writeln!(out, "\x1b[0m");
        }
        SecretString::new(out)
    }

    /// The code as a PNG: 1-bit greyscale, `scale` pixels per module (1 to 32), the quiet
    /// zone included, so the image is `(width + 8) × scale` pixels square. Written here
    /// (stored deflate blocks, CRC-32 and Adler-32) rather than through an image library;
    /// a QR code at scale 8 is about 20 KiB uncompressed.
    pub fn to_png(&self, scale: u32) -> Result<SecretBytes, Error> {
        if !(1..=MAX_PNG_SCALE).contains(&scale) {
            return Err(Error::Config("PNG scale is 1 to 32 pixels per module"));
        }
        let scale = scale as usize;
        let pixels = self.full_width() * scale;
        let side = u32::try_from(pixels).map_err(|_| Error::Config("QR code too large"))?;
        let row_bytes = pixels.div_ceil(8);
        // Raw scanlines: a filter byte (0, none) then the row, 1 bit per pixel, 1 = white.
        let mut raw = Zeroizing::new(Vec::with_capacity((row_bytes + 1) * pixels));
        let mut row = Zeroizing::new(vec![0u8; row_bytes]);
        for y in 0..pixels {
            row.iter_mut().for_each(|b| *b = 0);
            for x in 0..pixels {
                if !self.dark(x / scale, y / scale)
                    && let Some(byte) = row.get_mut(x / 8)
                {
                    *byte |= 0x80 >> (x % 8);
                }
            }
            raw.push(0);
            raw.extend_from_slice(&row);
        }
        let mut png = Vec::with_capacity(raw.len() + raw.len() / 65_535 * 5 + 128);
        png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&side.to_be_bytes());
        // Bit depth 1, colour type 0 (greyscale), deflate, adaptive filtering, no interlace.
        ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        let mut idat = Zeroizing::new(zlib_stored(&raw));
        chunk(&mut png, b"IDAT", &idat);
        idat.zeroize();
        chunk(&mut png, b"IEND", &[]);
        Ok(SecretBytes::new(png))
    }
}

/// Appends a PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    png.extend_from_slice(&len.to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    png.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4): no compression,
/// nothing to get wrong, and the data is small.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65_535 * 5 + 11);
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

impl crate::PendingEnrollment {
    /// The enrollment URI as a QR code (secret material: see [`EnrollmentQr`]).
    pub fn qr(&self) -> Result<EnrollmentQr, Error> {
        EnrollmentQr::encode(self.uri())
    }
}
