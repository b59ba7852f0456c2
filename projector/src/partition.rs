//! A projection run as N partitions: each stream belongs to one partition, by a hash of its id
//! that never changes between versions or hosts. A partition is its own unit of work: its own
//! checkpoint row and its own lease (both keyed by [`Partition::key`]), so its fencing token is
//! checked in the same update that moves its checkpoint.

/// Partition `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// Every partition of a projection run as `count`.
    pub fn all(count: u32) -> impl Iterator<Item = Self> {
        (0..count).map(move |index| Self { index, count })
    }

    /// The key of this partition's checkpoint and lease rows: `projection#index/count`. A
    /// projection run as one partition keeps the plain name, as before partitions existed.
    pub fn key(&self, projection: &str) -> String {
        if self.count == 1 {
            projection.to_owned()
        } else {
            format!("{projection}#{}/{}", self.index, self.count)
        }
    }

    /// Whether the events of `stream` are this partition's.
    pub fn owns(&self, stream: &str) -> bool {
        self.count == 1 || partition_of(stream, self.count) == self.index
    }
}

/// The partition of `stream` among `count`: FNV-1a of its bytes, so every instance agrees.
pub fn partition_of(stream: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_belongs_to_exactly_one_partition() {
        for i in 0..200 {
            let stream = format!("order-{}", uuid::Uuid::from_u128(i * 7919));
            let owners = Partition::all(4).filter(|p| p.owns(&stream)).count();
            assert_eq!(owners, 1, "{stream}");
        }
    }

    #[test]
    fn streams_spread_over_the_partitions() {
        let mut counts = [0; 4];
        for i in 0..4000u128 {
            let stream = format!(
                "order-{}",
                uuid::Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            );
            counts[partition_of(&stream, 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
    }

    #[test]
    fn a_single_partition_keeps_the_projection_name_as_its_key() {
        let one = Partition { index: 0, count: 1 };
        assert_eq!(one.key("order_status"), "order_status");
        let third = Partition { index: 2, count: 4 };
        assert_eq!(third.key("order_status"), "order_status#2/4");
    }
}
