"""Write the example domain corpus: harbour and marine-weather text of the fictional Port of Aldmere.

Everything here is invented by rung's authors (no third-party text), so it can ship under the project's licence.
The language is deliberately unlike general English prose — telegraphic forecasts, notices to mariners,
pilotage rules, a harbour log — so that continued pretraining visibly lowers domain perplexity, and the
forgetting monitor has something to watch. Seeded: running it again writes the same bytes.

    python examples/domain_corpus/make_corpus.py     # writes examples/domain_corpus/corpus/
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 2025
AREAS = ["Aldmere Roads", "Kestrel Bank", "Outer Skerries", "Greyhaven Sound", "North Fathom", "Saltmarsh Deep",
         "Corran Shelf", "Westmoor Approaches", "Brannock Rise", "Tern Ledge", "Holm Narrows", "Southwick Flats"]
DIRECTIONS = ["north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest"]
SEAS = ["smooth", "slight", "moderate", "rough", "very rough", "high"]
WEATHER = ["fair", "rain", "showers", "squally showers", "drizzle", "fog patches", "sleet", "thundery showers",
           "mainly fair", "heavy rain"]
VIS = ["good", "moderate", "poor", "very poor", "good, occasionally poor", "moderate or good",
       "moderate, occasionally very poor"]
VESSELS = ["MV Northern Tern", "MV Kestrel Star", "MT Saltmarsh Pride", "MV Greyhaven Trader", "RoRo Corran Bay",
           "MV Outer Light", "MT Brannock Spirit", "MV Holm Voyager", "FV Tern Ledge", "MV Westmoor Dawn",
           "MV Aldmere Courier", "MT North Fathom", "Tug Ardent", "Tug Resolute", "Dredger Marram"]
BERTHS = [f"Berth {n}" for n in range(1, 13)] + ["the Oil Jetty", "the Ro-Ro Ramp", "the Grain Quay",
                                                  "the Fish Dock", "the Lay-by Berth"]
CHANNELS = ["Eastern Approach Channel", "Western Approach Channel", "Inner Fairway", "Holm Narrows Channel",
            "Kestrel Deep Water Route"]
BUOYS = ["E1", "E3", "E5", "E7", "W2", "W4", "W6", "K1", "K2", "H3", "H4", "Fairway Light Buoy"]
OPERATIONS = ["dredging operations", "a survey of the seabed", "the replacement of a navigation buoy",
              "diving operations", "the laying of a subsea cable", "maintenance of the leading lights",
              "a salvage operation", "the removal of a wreck"]


def wind(rng: random.Random) -> str:
    force = rng.randint(2, 8)
    text = f"{rng.choice(DIRECTIONS)} {force}"
    if rng.random() < 0.6:
        text += f" to {force + rng.randint(1, 2)}" if force < 8 else " to gale 9"
    if rng.random() < 0.5:
        later = min(force + rng.randint(-2, 2), 10)
        later_text = f"gale {later}" if later >= 8 else str(max(later, 2))
        change = rng.choice(["veering", "backing", "increasing" if later > force else "decreasing",
                             "becoming cyclonic,"])
        text += f", {change} {rng.choice(DIRECTIONS)} {later_text}"
        text += rng.choice([" later", " for a time", ", occasionally gale 8 later", ""])
    return text


def forecast(rng: random.Random, number: int) -> str:
    day, hour = rng.randint(1, 28), rng.choice(["0015", "0505", "1130", "1705"])
    lines = [f"ALDMERE MARINE FORECAST No. {number}. Issued by the Aldmere Coastguard Weather Office at {hour} UTC "
             f"on day {day}.",
             f"General synopsis at {hour}: low {rng.choice(AREAS)} {rng.randint(968, 1012)}, expected "
             f"{rng.choice(AREAS)} {rng.randint(968, 1016)} by midnight. "
             + rng.choice(["New high moving slowly east.", "Ridge building from the west.",
                           "Associated front clearing east.", "Low deepening as it moves northeast.", ""]),
             ""]
    for area in rng.sample(AREAS, rng.randint(4, 8)):
        sea = rng.choice(SEAS)
        if rng.random() < 0.5 and sea != "high":
            sea += f" or {SEAS[SEAS.index(sea) + 1]}"
        lines.append(f"{area}. Wind {wind(rng)}. Sea state {sea}"
                     + (", occasionally very rough later" if rng.random() < 0.15 else "")
                     + f". Weather {rng.choice(WEATHER)}"
                     + (f", {rng.choice(WEATHER)} later" if rng.random() < 0.4 else "")
                     + f". Visibility {rng.choice(VIS)}.")
    if rng.random() < 0.3:
        lines.append("")
        lines.append(f"Gale warning in force for {rng.choice(AREAS)} and {rng.choice(AREAS)}. Small craft should "
                     "remain in harbour until the warning is cancelled.")
    return "\n".join(lines) + "\n"


def notice(rng: random.Random, number: int) -> str:
    op, channel = rng.choice(OPERATIONS), rng.choice(CHANNELS)
    b1, b2 = rng.sample(BUOYS, 2)
    start, days = rng.randint(1, 20), rng.randint(2, 21)
    speed = rng.choice([4, 5, 6, 8])
    craft = rng.choice(["Dredger Marram", "Survey Vessel Plover", "Workboat Carrick", "Crane Barge Goliath",
                        "Dive Support Vessel Selkie"])
    paras = [
        f"NOTICE TO MARINERS No. {number} of 2025. PORT OF ALDMERE. {op.upper()} IN THE {channel.upper()}.",
        f"Mariners are advised that {op} will take place in the {channel} between buoy {b1} and buoy {b2} "
        f"from day {start} for approximately {days} days, weather permitting. The work will be carried out by "
        f"{craft}, which will display the signals prescribed for a vessel restricted in her ability to manoeuvre.",
        f"Vessels navigating in the vicinity shall proceed at a speed not exceeding {speed} knots, keep well clear "
        f"of the working area and pass on the side indicated by the attending vessel. Masters of vessels over "
        f"{rng.choice([60, 80, 100, 120])} metres length overall shall report to Aldmere VTS on VHF channel "
        f"{rng.choice([12, 14, 16, 71])} at least {rng.choice([30, 60])} minutes before entering the "
        f"{channel}.",
    ]
    if rng.random() < 0.5:
        paras.append(f"Charted depths between {b1} and {b2} may be reduced by up to {rng.randint(2, 9) / 10:.1f} "
                     "metres until the survey is complete. Mariners should allow an additional margin of under-keel "
                     "clearance.")
    paras.append(f"Notice to Mariners No. {number - rng.randint(1, 9)} of 2025 is cancelled. "
                 "Issued by the Harbour Master, Port of Aldmere.")
    return "\n\n".join(paras) + "\n"


def rules(rng: random.Random) -> str:
    sections = []
    for number in range(1, 41):
        length = rng.choice([80, 100, 120, 150, 180, 200, 250])
        draught = rng.choice([6.5, 7.0, 8.5, 9.0, 10.5, 11.0, 12.5])
        station = rng.choice(["the Kestrel pilot station", "the Fairway Light Buoy", "the Holm boarding area",
                              "the Westmoor pilot station"])
        topic = rng.choice(["Compulsory pilotage", "Tidal windows", "Towage", "Anchorage", "Reporting",
                            "Speed limits", "Dangerous goods", "Mooring", "Bunkering", "Restricted visibility"])
        if topic == "Compulsory pilotage":
            text = (f"Every vessel of {length} metres length overall or more, and every vessel carrying dangerous "
                    f"goods in bulk, shall embark a licensed Aldmere pilot at {station} before entering the "
                    f"{rng.choice(CHANNELS)}. The pilot ladder shall be rigged on the lee side, "
                    f"{rng.choice([1.5, 2.0])} metres above the water.")
        elif topic == "Tidal windows":
            text = (f"Vessels with a draught exceeding {draught} metres may transit the {rng.choice(CHANNELS)} only "
                    f"between {rng.randint(2, 3)} hours before and {rng.randint(1, 2)} hours after high water "
                    f"Aldmere, and only when the predicted height of tide exceeds {rng.randint(20, 45) / 10:.1f} "
                    "metres.")
        elif topic == "Towage":
            text = (f"Vessels exceeding {length} metres length overall shall engage not fewer than "
                    f"{rng.choice(['two', 'three'])} harbour tugs of at least {rng.choice([40, 50, 60, 70])} tonnes "
                    f"bollard pull when berthing at {rng.choice(BERTHS)} or when the wind exceeds force "
                    f"{rng.randint(5, 7)}.")
        elif topic == "Anchorage":
            text = (f"Vessels awaiting a berth shall anchor in the {rng.choice(['Outer', 'Inner', 'Holm', 'Kestrel'])} "
                    f"Anchorage, not less than {rng.choice([3, 4, 5])} cables from any other vessel at anchor, "
                    f"and shall maintain a continuous listening watch on VHF channel {rng.choice([12, 14, 16])}.")
        elif topic == "Reporting":
            text = (f"Masters shall report to Aldmere VTS {rng.choice([2, 3, 6, 12, 24])} hours before arrival, "
                    "giving the vessel's name, call sign, IMO number, draught, cargo, and the number of persons on "
                    f"board, and again on passing buoy {rng.choice(BUOYS)}.")
        elif topic == "Speed limits":
            text = (f"No vessel shall proceed at a speed exceeding {rng.choice([5, 6, 8, 10])} knots through the "
                    f"water within the {rng.choice(CHANNELS)}, nor create a wash that endangers vessels moored at "
                    f"{rng.choice(BERTHS)}.")
        elif topic == "Dangerous goods":
            text = (f"Vessels carrying dangerous goods of class {rng.choice([1, 2, 3, 5, 6, 8])} shall give the "
                    f"Harbour Master {rng.choice([24, 48, 72])} hours' notice, display by day flag B and by night "
                    f"an all-round red light, and shall berth only at {rng.choice(['the Oil Jetty', 'Berth 11', 'Berth 12'])}.")
        elif topic == "Mooring":
            text = (f"Vessels moored at {rng.choice(BERTHS)} shall keep not fewer than "
                    f"{rng.choice(['four', 'six', 'eight'])} mooring lines fast, tend them at every change of tide, "
                    f"and keep the main engine at {rng.choice([15, 30, 60])} minutes' notice when the wind exceeds "
                    f"force {rng.randint(6, 8)}.")
        elif topic == "Bunkering":
            text = (f"Bunkering at {rng.choice(BERTHS)} requires the Harbour Master's written permission, a completed "
                    "ship-to-ship checklist, and a boom deployed around the receiving vessel when transferring more "
                    f"than {rng.choice([50, 100, 200])} tonnes.")
        else:
            text = (f"In visibility of less than {rng.choice([0.5, 1, 2])} nautical miles, vessels of "
                    f"{length} metres length overall or more shall not get under way without the consent of "
                    f"Aldmere VTS, and vessels under way shall sound the signals required by Rule 35.")
        sections.append(f"Rule {number}. {topic}.\n{text}")
    return ("PORT OF ALDMERE HARBOUR DIRECTIONS AND PILOTAGE RULES\n\n" + "\n\n".join(sections) + "\n")


def log_entries(rng: random.Random, count: int) -> list[str]:
    rows = []
    hour, minute = 0, 0
    for _ in range(count):
        minute += rng.randint(5, 55)
        hour, minute = (hour + minute // 60) % 24, minute % 60
        vessel = rng.choice(VESSELS)
        imo = 9_000_000 + rng.randint(100_000, 899_999)
        action = rng.choice([
            f"cleared {rng.choice(BERTHS)}, outbound via the {rng.choice(CHANNELS)}; pilot disembarked at buoy "
            f"{rng.choice(BUOYS)}",
            f"arrived at the {rng.choice(['Outer', 'Inner', 'Holm'])} Anchorage, anchored in "
            f"{rng.randint(12, 30)} metres; awaiting {rng.choice(BERTHS)}",
            f"all fast {rng.choice(BERTHS)}, port side to, assisted by {rng.choice(['Tug Ardent', 'Tug Resolute'])}",
            f"reported a main engine defect off {rng.choice(AREAS)}; proceeding at reduced speed, ETA delayed "
            f"{rng.randint(1, 6)} hours",
            f"passed buoy {rng.choice(BUOYS)} inbound, draught {rng.randint(55, 125) / 10:.1f} metres, pilot on board",
            f"commenced cargo operations at {rng.choice(BERTHS)}; {rng.randint(200, 9000)} tonnes to discharge",
        ])
        weather = f"Wind {rng.choice(DIRECTIONS)} {rng.randint(1, 7)}, visibility {rng.choice(VIS)}."
        rows.append(f"{hour:02d}{minute:02d} UTC. {vessel} (IMO {imo}) {action}. {weather}")
    return rows


def main(out: Path | None = None) -> None:
    rng = random.Random(SEED)
    out = Path(out) if out else Path(__file__).resolve().parent / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    (out / "forecasts.txt").write_text("\n\n".join(forecast(rng, n) for n in range(1, 121)), encoding="utf-8")
    (out / "notices_to_mariners.txt").write_text("\n\n".join(notice(rng, n) for n in range(10, 90)),
                                                 encoding="utf-8")
    (out / "harbour_directions.md").write_text(rules(rng), encoding="utf-8")
    with open(out / "harbour_log.jsonl", "w", encoding="utf-8") as handle:
        for day in range(1, 61):
            text = f"ALDMERE VTS LOG, day {day}.\n" + "\n".join(log_entries(rng, rng.randint(8, 16)))
            handle.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()
