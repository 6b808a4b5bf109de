//! The Block2/Block1 option value (RFC 7959 §2.2).
//!
//! Hand-written rather than coap-lite's `BlockValue`, whose block number is
//! a u16: RFC 7959 allows 20 bits, and a 3 MiB image in 16-byte blocks needs
//! block numbers up to 196,607.

/// Largest block number RFC 7959 can express.
pub const MAX_NUM: u32 = (1 << 20) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub num: u32,
    pub more: bool,
    /// Size exponent: block size is `2^(szx+4)`, 0..=6 on UDP.
    pub szx: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block option longer than 3 bytes")]
    TooLong,
    #[error("block size exponent 7 (BERT) is only for CoAP over TCP")]
    Bert,
}

impl Block {
    pub fn parse(bytes: &[u8]) -> Result<Block, BlockError> {
        if bytes.len() > 3 {
            return Err(BlockError::TooLong);
        }
        let value = bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let szx = (value & 0x7) as u8;
        if szx == 7 {
            return Err(BlockError::Bert);
        }
        Ok(Block {
            num: value >> 4,
            more: value & 0x8 != 0,
            szx,
        })
    }

    /// Minimal-length encoding (a zero value is the empty option).
    pub fn encode(&self) -> Vec<u8> {
        let value = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x7);
        let bytes = value.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        bytes[skip..].to_vec()
    }

    pub fn size(&self) -> usize {
        Block::size_of(self.szx)
    }

    /// Block size for exponent `szx` (16 << szx).
    pub fn size_of(szx: u8) -> usize {
        16 << szx.min(6)
    }

    /// The exponent of a power-of-two size in 16..=1024.
    pub fn szx_of(size: usize) -> u8 {
        (size.clamp(16, 1024).trailing_zeros() - 4) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        assert_eq!(
            Block {
                num: 0,
                more: false,
                szx: 0
            }
            .encode(),
            Vec::<u8>::new()
        );
        assert_eq!(
            Block {
                num: 1,
                more: true,
                szx: 6
            }
            .encode(),
            vec![0x1e]
        );
        assert_eq!(
            Block {
                num: 196_607,
                more: true,
                szx: 0
            }
            .encode(),
            vec![0x2f, 0xff, 0xf8]
        );
        assert_eq!(Block::parse(&[0x0f]), Err(BlockError::Bert));
        assert_eq!(Block::parse(&[1, 2, 3, 4]), Err(BlockError::TooLong));
    }

    proptest! {
        #[test]
        fn roundtrip(num in 0..=MAX_NUM, more: bool, szx in 0u8..=6) {
            let block = Block { num, more, szx };
            prop_assert_eq!(Block::parse(&block.encode()), Ok(block));
        }
    }
}
