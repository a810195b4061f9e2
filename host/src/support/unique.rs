//! Maps whose keys are names (faults, pollers, notifiers, proxies, tokens): each name
//! once. serde keeps the last of two entries of one key without a word, so a config
//! that named a fault twice ran the second and said nothing of the first.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    de::{MapAccess, Visitor},
    Deserialize, Deserializer,
};

/// A map of names to `V`, refused with the name when one comes twice.
pub fn names<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    deserializer.deserialize_map(Names(PhantomData))
}

struct Names<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for Names<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of names `{\"name\": ...}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value::<V>()?;
            if names.contains_key(&name) {
                return Err(serde::de::Error::custom(format!(
                    "the name {name:?} is given twice: each name once (the second would replace the first)"
                )));
            }
            names.insert(name, value);
        }
        Ok(names)
    }
}
