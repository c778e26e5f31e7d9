//! Where the cluster keeps things in Redis: every key and channel, named once. The keys of one
//! room share a hash tag (a stable hash of its name), as do a node's, a session's and the
//! index's, so that each store function touches one hash slot and the same library runs on a
//! Redis Cluster. The layout is described at the top of `store.lua`.

use parlor_protocol::SessionId;

/// A stable 64-bit FNV-1a hash, hex: the same on every node and every build.
fn tag(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The keys and channels of one cluster, under its prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

/// The three keys of one room, in the order the store functions take them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomKeys {
    pub room: String,
    pub members: String,
    pub log: String,
    /// The channel's name up to the history epoch (`channel` adds it).
    channel_head: String,
}

impl RoomKeys {
    /// The channel of the room's incarnation with history epoch `epoch`: a room made again
    /// under the same name has a channel of its own, so a node never takes the frames of one
    /// for the other's.
    pub fn channel(&self, epoch: &str) -> String {
        format!("{}{epoch}", self.channel_head)
    }
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn room(&self, room: &str) -> RoomKeys {
        let p = &self.prefix;
        let t = tag(room);
        RoomKeys {
            room: format!("{p}{{r:{t}}}:room:{room}"),
            members: format!("{p}{{r:{t}}}:members:{room}"),
            log: format!("{p}{{r:{t}}}:log:{room}"),
            channel_head: format!("{p}{{r:{t}}}:c:{}:{room}:", room.len()),
        }
    }

    /// The room and history epoch a channel carries, if it is a room channel of this cluster.
    pub fn room_of_channel<'a>(&self, channel: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix("{r:")?;
        let (_, rest) = rest.split_once("}:c:")?;
        let (len, rest) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let room = rest.get(..len)?;
        let epoch = rest.get(len..)?.strip_prefix(':')?;
        Some((room, epoch))
    }

    pub fn node_rooms(&self, node: &str) -> String {
        format!("{}{{n:{node}}}:rooms", self.prefix)
    }

    pub fn inbox(&self, node: &str) -> String {
        format!("{}{{n:{node}}}:inbox", self.prefix)
    }

    pub fn session(&self, session: SessionId) -> (String, String) {
        let p = &self.prefix;
        (
            format!("{p}{{s:{session}}}:session"),
            format!("{p}{{s:{session}}}:rooms"),
        )
    }

    pub fn index_rooms(&self) -> String {
        format!("{}{{ix}}:rooms", self.prefix)
    }

    pub fn index_version(&self) -> String {
        format!("{}{{ix}}:ver", self.prefix)
    }

    pub fn beats(&self) -> String {
        format!("{}{{ix}}:beats", self.prefix)
    }

    pub fn orphans(&self) -> String {
        format!("{}{{ix}}:orphans", self.prefix)
    }

    pub fn lobby(&self) -> String {
        format!("{}{{ix}}:lobby", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_keys_share_one_tag_and_its_channel_names_it_back() {
        let keys = Keys::new("parlor:");
        for room in ["lobby", "ré", "a}b{c", "", "{x}"] {
            let k = keys.room(room);
            let tag_of = |key: &str| {
                let open = key.find('{').unwrap();
                let close = open + key[open..].find('}').unwrap();
                key[open + 1..close].to_owned()
            };
            assert_eq!(tag_of(&k.room), tag_of(&k.members));
            assert_eq!(tag_of(&k.room), tag_of(&k.log));
            assert_eq!(keys.room_of_channel(&k.channel("e1")), Some((room, "e1")));
            assert_eq!(keys.room_of_channel(&k.channel("")), Some((room, "")));
        }
        assert_ne!(keys.room("a").room, keys.room("b").room);
        assert_eq!(keys.room_of_channel("parlor:{n:a}:inbox"), None);
    }
}
