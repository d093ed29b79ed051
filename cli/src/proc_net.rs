//! Reading this process's TCP table (`/proc/self/net/tcp{,6}`): for the
//! benches and tests that count connections to a node.

/// Established TCP connections of this process whose remote port is `port`:
/// the client ends of connections to whatever listens there. (When the
/// server runs in the same process, its ends have `port` as the local port
/// and are not counted.) 0 where the tables cannot be read.
pub fn established_to(port: u16) -> u64 {
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        n += count_established_to(&text, port);
    }
    n
}

/// Rows of one table (header first) in state 01 (established) whose remote
/// `ADDR:PORT` (hex) has port `port`.
fn count_established_to(table: &str, port: u16) -> u64 {
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (Some(rem), Some(state)) = (cols.get(2), cols.get(3)) else {
                return false;
            };
            let rem_port = rem
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            *state == "01" && rem_port == Some(port)
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::count_established_to;

    #[test]
    fn only_established_rows_to_the_port_count() {
        let table = "  sl  local_address rem_address   st\n\
            0: 0100007F:9C40 0100007F:1F90 01\n\
            1: 0100007F:9C41 0100007F:1F90 06\n\
            2: 0100007F:9C42 0100007F:1F91 01\n\
            3: 0100007F:1F90 0100007F:9C40 01\n";
        assert_eq!(count_established_to(table, 0x1F90), 1);
        assert_eq!(count_established_to(table, 0x1F91), 1);
        assert_eq!(count_established_to(table, 0x9C40), 1);
    }
}
