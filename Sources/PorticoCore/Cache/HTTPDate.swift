//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// HTTP dates (RFC 9110 §5.6.7) as seconds since the Unix epoch: all three formats a recipient must accept,
/// and IMF-fixdate to send. Pure functions, no Foundation, usable on an EventLoop.
public enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    private static let dayNames = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]  // 1970-01-01 was a Thursday

    /// Parses `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT` and `Sun Nov  6 08:49:37 1994`.
    /// Nil when the value is none of them (an invalid `Expires` then means "already expired", RFC 9111 §5.3).
    public static func parse<S: StringProtocol>(_ text: S) -> Int64? {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "," }).map { $0.lowercased() }
        var day = 0, month = 0, year = 0
        var time: Substring = ""
        if parts.count == 6, parts[5] == "gmt" {
            // IMF-fixdate: [wkday, DD, Mon, YYYY, HH:MM:SS, GMT]
            guard let d = Int(parts[1]), let m = months.firstIndex(of: parts[2]), let y = Int(parts[3]), parts[3].count == 4 else { return nil }
            (day, month, year, time) = (d, m + 1, y, Substring(parts[4]))
        } else if parts.count == 4, parts[3] == "gmt" {
            // RFC 850: [weekday, DD-Mon-YY, HH:MM:SS, GMT]; a two-digit year within 50 years of now (§5.6.7).
            let dmy = parts[1].split(separator: "-")
            guard dmy.count == 3, let d = Int(dmy[0]), let m = months.firstIndex(of: String(dmy[1])), let yy = Int(dmy[2]), dmy[2].count == 2 else { return nil }
            (day, month, year, time) = (d, m + 1, yy < 70 ? 2000 + yy : 1900 + yy, Substring(parts[2]))
        } else if parts.count == 5 {
            // asctime: [wkday, Mon, D, HH:MM:SS, YYYY]
            guard let m = months.firstIndex(of: parts[1]), let d = Int(parts[2]), let y = Int(parts[4]) else { return nil }
            (day, month, year, time) = (d, m + 1, y, Substring(parts[3]))
        } else {
            return nil
        }
        let hms = time.split(separator: ":")
        guard hms.count == 3, let h = Int(hms[0]), let mi = Int(hms[1]), let s = Int(hms[2]),
            (0...23).contains(h), (0...59).contains(mi), (0...60).contains(s), (1...31).contains(day), (1900...9999).contains(year)
        else { return nil }
        return Self.daysFromCivil(year, month, day) * 86400 + Int64(h * 3600 + mi * 60 + s)
    }

    /// IMF-fixdate of `seconds` since the epoch.
    public static func format(_ seconds: Int64) -> String {
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let rem = Int(seconds - days * 86400)
        let (y, m, d) = Self.civilFromDays(days)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let weekday = Self.dayNames[Int(((days % 7) + 7) % 7)]
        return "\(weekday), \(two(d)) \(Self.monthNames[m - 1]) \(y) \(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60)) GMT"
    }

    // Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return Int64(era * 146097 + doe - 719468)
    }

    static func civilFromDays(_ z0: Int64) -> (Int, Int, Int) {
        let z = Int(z0) + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
