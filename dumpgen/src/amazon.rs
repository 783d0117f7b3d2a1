//! Amazon "Request My Data" (EXPORTS.md §3).

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::gen::{MediaKind, Planned};
use crate::util::{
    alnum, ascii_words, date_only, dd_mon_yyyy, digits, iso_ms, iso_s, pick, sub_seed, us_datetime,
    words,
};
use crate::{Ctx, Era};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One CSV line; `all` quotes every field, otherwise only where needed;
/// `None` is an empty, unquoted field.
fn line(fields: &[Option<String>], all: bool) -> Vec<u8> {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match f {
            None => {}
            Some(v) => {
                let needs = all || v.contains([',', '"', '\n', '\r']);
                if needs {
                    out.push('"');
                    out.push_str(&v.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(v);
                }
            }
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn header(cols: &[&str], all: bool) -> Vec<u8> {
    let mut h = BOM.to_vec();
    h.extend(line(
        &cols
            .iter()
            .map(|c| Some((*c).to_owned()))
            .collect::<Vec<_>>(),
        all,
    ));
    h
}

const RETAIL: &[&str] = &[
    "Website",
    "Order ID",
    "Order Date",
    "Purchase Order Number",
    "Currency",
    "Unit Price",
    "Unit Price Tax",
    "Shipping Charge",
    "Total Discounts",
    "Total Owed",
    "Shipment Item Subtotal",
    "Shipment Item Subtotal Tax",
    "ASIN",
    "Product Condition",
    "Quantity",
    "Payment Instrument Type",
    "Order Status",
    "Shipment Status",
    "Ship Date",
    "Shipping Option",
    "Shipping Address",
    "Billing Address",
    "Carrier Name & Tracking Number",
    "Product Name",
    "Gift Message",
    "Gift Sender Name",
    "Gift Recipient Contact Details",
    "Item Serial Number",
];

fn s(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

pub(crate) fn plan(ctx: &Ctx) -> Vec<Planned> {
    let legacy = ctx.era == Era::Legacy;
    let t = ctx.text_budget as f64;
    let share = |w: f64| (t * w) as u64;
    let m = ctx.media_budget as f64;
    let mut out = Vec::new();

    // Retail.OrderHistory.N (§3.1), two partitions.
    for (n, w) in [(1, 0.4), (2, 0.1)] {
        let spec = ctx.spec(
            &format!("retail-{n}"),
            share(w),
            header(RETAIL, true),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Arc::new(move |rng, i, t| {
                let price = rng.gen_range(100..20_000) as f64 / 100.0;
                let date = if legacy {
                    us_datetime(t)
                } else if i % 9 == 4 {
                    format!("{} and {}", iso_ms(t), iso_s(t + 3_600_000))
                } else if i % 2 == 0 {
                    iso_ms(t)
                } else {
                    iso_s(t)
                };
                let ship = if i % 7 == 0 {
                    "Not Available".to_owned()
                } else {
                    iso_s(t + 86_400_000)
                };
                let address = if i % 5 == 0 {
                    "Jo Example\n1 Sample St\nSPRINGFIELD".to_owned()
                } else {
                    "Jo Example 1 Sample St SPRINGFIELD".to_owned()
                };
                line(
                    &[
                        s(pick(rng, &["Amazon.com", "Amazon.de", "Amazon.it"])),
                        s(format!(
                            "{}-{}-{}",
                            digits(rng, 3),
                            digits(rng, 7),
                            digits(rng, 7)
                        )),
                        s(date),
                        s("Not Applicable"),
                        s("USD"),
                        s(format!("{price:.2}")),
                        s(format!("{:.2}", price * 0.08)),
                        s("0"),
                        s(if i % 6 == 0 { "'-2.00'" } else { "0" }),
                        s(format!("{:.2}", price * 1.08)),
                        s(format!("{price:.2}")),
                        s(format!("{:.2}", price * 0.08)),
                        s(format!("B0{}", alnum(rng, 8).to_uppercase())),
                        s("New"),
                        s(rng.gen_range(1..4).to_string()),
                        s("Visa - 0000"),
                        s("Closed"),
                        s("Shipped"),
                        s(ship),
                        s("std-us"),
                        s(address.clone()),
                        s(address),
                        s(format!("AMZN_US(TBA{})", digits(rng, 12))),
                        s(words(rng, 2, 6)),
                        s("Not Available"),
                        s("Not Available"),
                        s("Not Available"),
                        s("Not Available"),
                    ],
                    true,
                )
            }),
            420,
        );
        out.push(Planned::stream(
            format!("Retail.OrderHistory.{n}/Retail.OrderHistory.{n}.csv"),
            spec,
        ));
    }

    // Digital-Ordering.1 (§3.2).
    let title_col = if legacy { "Title" } else { "ProductName" };
    let items_header = [
        "ASIN",
        title_col,
        "OrderId",
        "DigitalOrderItemId",
        "DeclaredCountryCode",
        "BaseCurrencyCode",
        "FulfilledDate",
        "IsFulfilled",
        "Marketplace",
        "OrderDate",
        "OriginalQuantity",
        "OurPrice",
        "OurPriceCurrencyCode",
        "OurPriceTax",
        "Publisher",
        "QuantityOrdered",
    ];
    let day = move |t: i64| if legacy { date_only(t) } else { iso_s(t) };
    out.push(Planned::stream(
        "Digital-Ordering.1/Digital Items.csv",
        ctx.spec(
            "digital-items",
            share(0.15),
            header(&items_header, false),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Arc::new(move |rng, i, t| {
                line(
                    &[
                        s(format!("B0{}", alnum(rng, 8).to_uppercase())),
                        s(format!("{}, Vol. {}", words(rng, 1, 4), i % 9 + 1)),
                        s(format!("D01-{}-{}", digits(rng, 7), digits(rng, 7))),
                        s(alnum(rng, 17).to_uppercase()),
                        s("US"),
                        s("USD"),
                        s(day(t)),
                        s("Yes"),
                        s("www.amazon.com"),
                        s(day(t)),
                        s("1"),
                        s(format!("{}.99", rng.gen_range(0..20))),
                        s("USD"),
                        s(if i % 3 == 0 { "N/A" } else { "Not Applicable" }),
                        s(ascii_words(rng, 1, 2)),
                        s("1"),
                    ],
                    false,
                )
            }),
            220,
        ),
    ));
    out.push(Planned::stream(
        "Digital-Ordering.1/Digital Orders.csv",
        ctx.spec(
            "digital-orders",
            share(0.05),
            header(
                &[
                    "OrderId",
                    "OrderDate",
                    "Marketplace",
                    "OrderStatus",
                    "BaseCurrencyCode",
                    "OrderTotal",
                ],
                false,
            ),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Arc::new(move |rng, _i, t| {
                line(
                    &[
                        s(format!("D01-{}-{}", digits(rng, 7), digits(rng, 7))),
                        s(day(t)),
                        s("www.amazon.com"),
                        s("Closed"),
                        s("USD"),
                        s(format!("{}.99", rng.gen_range(0..20))),
                    ],
                    false,
                )
            }),
            80,
        ),
    ));

    // Audible (§3.4).
    let lib_cols = [
        "DateAdded",
        "Title",
        "Asin",
        "IsDownloaded",
        "IsDeleted",
        "DeleteBy",
        "DateDeleted",
        "IsPublic",
        "IsStreamed",
        "IsPreorder",
        "Downloads",
        "DateFirstDownloaded",
        "OrderNumber",
        "OriginType",
    ];
    out.push(Planned::stream(
        "Audible.Library/Audible.Library.csv",
        ctx.spec(
            "audible-library",
            share(0.1),
            header(&lib_cols, true),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Arc::new(|rng, _i, t| {
                line(
                    &[
                        s(dd_mon_yyyy(t)),
                        s(format!("The {} Chronicles (Unabridged)", words(rng, 1, 2))),
                        s(format!("B0{}", alnum(rng, 8).to_uppercase())),
                        s("Y"),
                        s("N"),
                        None,
                        None,
                        s("N"),
                        s(pick(rng, &["Y", "N"])),
                        s("N"),
                        s(rng.gen_range(0..5).to_string()),
                        s(dd_mon_yyyy(t + 86_400_000)),
                        s(format!("D01-{}-{}", digits(rng, 7), digits(rng, 7))),
                        s("Purchase"),
                    ],
                    true,
                )
            }),
            200,
        ),
    ));
    out.push(Planned::stream(
        "Audible.Listening/Audible.Listening.csv",
        ctx.spec(
            "audible-listening",
            share(0.1),
            header(
                &[
                    "DeviceType",
                    "StartDate",
                    "EndDate",
                    "EventDuration",
                    "Title",
                    "Asin",
                    "LocalTimezone",
                ],
                false,
            ),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Arc::new(|rng, _i, t| {
                let dur = rng.gen_range(60_000..3_600_000i64);
                line(
                    &[
                        s(pick(rng, &["Android", "iPhone", "Echo"])),
                        s(iso_s(t)),
                        s(iso_s(t + dur)),
                        s(dur.to_string()),
                        s(format!("The {} Chronicles", words(rng, 1, 2))),
                        s(format!("B0{}", alnum(rng, 8).to_uppercase())),
                        s("Europe/Zurich"),
                    ],
                    false,
                )
            }),
            120,
        ),
    ));

    // Alexa voice history — layout NOT confirmed by EXPORTS.md §3.3; an
    // invented CSV + audio folder in the style of the other categories.
    let mut rng = StdRng::seed_from_u64(sub_seed(ctx.seed, "alexa"));
    let n_audio = ((m / 100_000.0) as u64).clamp(2, 20_000);
    let audio_size = ((m / n_audio as f64) as u64).max(1000);
    let dir = "Alexa.VoiceHistory";
    let mut presets = Vec::new();
    let mut when = ctx.export_ms - 86_400_000;
    for k in 0..n_audio {
        when -= rng.gen_range(600_000..10 * 86_400_000);
        let name = format!("audio/{}_{k:05}.mp3", iso_s(when).replace([':', '-'], ""));
        out.push(Planned::media(
            format!("{dir}/{name}"),
            MediaKind::Mp3,
            audio_size / 2 + rng.gen_range(0..audio_size),
            sub_seed(ctx.seed, &name),
        ));
        presets.push(line(
            &[
                s(iso_ms(when)),
                s("Kitchen Echo"),
                s("Echo Dot"),
                s(format!("alexa {}", ascii_words(&mut rng, 2, 6))),
                s(name),
            ],
            false,
        ));
    }
    let mut spec = ctx.spec(
        "alexa",
        share(0.05),
        header(
            &[
                "Timestamp",
                "DeviceName",
                "DeviceType",
                "Transcript",
                "AudioFile",
            ],
            false,
        ),
        Vec::new(),
        Vec::new(),
        presets,
        Arc::new(|rng, _i, t| {
            line(
                &[
                    s(iso_ms(t)),
                    s("Living Room"),
                    s("Echo Show"),
                    s(format!("alexa {}", ascii_words(rng, 2, 6))),
                    s(""),
                ],
                false,
            )
        }),
        90,
    );
    spec.t_end = when - 60_000;
    out.push(Planned::stream(format!("{dir}/{dir}.csv"), spec));
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
