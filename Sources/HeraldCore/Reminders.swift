import Foundation

/// Which reminders an accepted booking event schedules, and whether it cancels them: the
/// rules of a route's `remind:`, applied at acceptance so the journal stores them in the
/// event's own commit.
public enum Reminders {
    public struct Plan: Sendable, Equatable {
        public var bookingKey: String?
        public var reminders: [ScheduledReminder] = []
        public var cancels = false
    }

    /// For each target with `remind:` offsets, a reminder at the booking's start minus the
    /// offset; one whose time passed longer ago than the route's grace is planned as skipped.
    /// A cancellation plans none and cancels the booking's pending ones.
    public static func plan(for event: Event, targets: [RouteTable.Target], now: Date) -> Plan {
        // Field by field, not `let booking = event.booking`, which copied all of it.
        guard let uid = event.booking?.uid, !uid.isEmpty else { return Plan() }
        var plan = Plan(bookingKey: uid)
        if BookingSnapshot.isCancellation(eventName: event.name, status: event.booking?.status) {
            plan.cancels = true
            return plan
        }
        guard let start = event.booking?.startedAt else { return plan }
        for target in targets {
            for offset in target.remind {
                let seconds = Int(offset.components.seconds)
                let at = start - TimeInterval(seconds)
                var reminder = ScheduledReminder(notifier: target.notifier, offset: seconds, remindAt: at)
                if now.timeIntervalSince(at) > target.remindGrace.seconds {
                    reminder.skipReason = "its time (\(ISO8601.format(at))) had passed by more than "
                        + "\(TimeText.shortDuration(target.remindGrace)) when the booking arrived"
                }
                plan.reminders.append(reminder)
            }
        }
        return plan
    }

    /// Whether a reminder due at `remindAt` is too late to send at `now` (Herald was down).
    static func tooLate(remindAt: Date, now: Date, grace: Duration) -> Bool {
        now.timeIntervalSince(remindAt) > grace.seconds
    }
}
