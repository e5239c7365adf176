//! The batching rules: lanes by number, one start per number per statement.

use super::*;

#[test]
fn a_number_always_goes_to_the_same_lane_and_numbers_spread() {
    let numbers: Vec<String> = (0..1000).map(|i| format!("+1415555{i:04}")).collect();
    let mut per_lane = [0usize; 4];
    for n in &numbers {
        let i = route(n, 4);
        assert_eq!(i, route(n, 4));
        per_lane[i] += 1;
    }
    assert!(per_lane.iter().all(|&c| c > 150), "{per_lane:?}");
}

#[test]
fn a_second_start_for_a_number_waits_for_the_next_statement() {
    let start = |n: &str, id: u128| Request::<u128, ()> {
        number: n.into(),
        item: id,
        reply: oneshot::channel().0,
    };
    let batch = vec![start("+1", 1), start("+2", 2), start("+1", 3), start("+1", 4)];
    let (now, later) = distinct_numbers(batch);
    let ids = |v: &[Request<u128, ()>]| v.iter().map(|s| s.item).collect::<Vec<_>>();
    assert_eq!(ids(&now), [1, 2]);
    assert_eq!(ids(&later), [3, 4]);
    let (now, later) = distinct_numbers(later);
    assert_eq!((ids(&now), ids(&later)), (vec![3], vec![4]));
}
