"""The extraction rules: how people say things about themselves, as patterns.

Each rule is (attribute, pattern). Keywords match in any case (``(?i:...)``);
names and places must be capitalised, so "Bob and I live" stops at "Bob".
The patterns are deliberately about *shapes* of sentences ("I moved from A
to B", "my kids are A, B and C", "not a fan of X", "X has been home for
years"), not about particular words, so they carry over to sentences nobody
wrote them for. ``rule_facts`` in ``extract`` applies them to a message's
statements only.
"""

from __future__ import annotations

import re

_CAP = r"(?!I\b)[A-Z][\w'\-]*"  # "I" is the speaker, never a place or a name
NAME = r"([A-Za-z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+)?)"
# a place: capitalised words, with the small words of place names between them ("Stratford-upon-Avon", "São Paulo")
PLACE = rf"((?:[A-Z][\w'\-]*|[a-z][\w'\-]*(?=\s+{_CAP}))(?:[ \-](?:{_CAP}|de|do|da|del|la|le|upon|on|am|im|sur|of))*(?:[ \-]{_CAP})?)"
THING = r"([\w'\- ]{2,40}?)"
END = (
    r"(?=\s*[.,!?;:)(]|\s*[-–—]|$|\s+(?i:and|but|because|with|at|for|in|on|as|since|last|next|now|today|tonight|these days|"
    r"nowadays|so|though|too|as well|every|each|when|while|which|who|from|btw|by the way|lol|haha|tbh|honestly|all|most|"
    r"mostly|usually|always|anymore|any more|over|here|there|right|pretty|really|cause|cos|coz|my|a couple|a few|a bit|"
    r"years?|months?|weeks?|ago|back|specifically|though|if|or)\b)"
)
#: a place or a name ends where its capitalised words end
CAP_END = r"(?=\s+(?![A-Z])|\s*[^\w\s'’\-]|$)"
THEN = r"(?:\s+(?:now|currently|these days|nowadays|at the moment|right now))?"
MOVE = r"(?:moved|relocated|moving back|emigrated|came)(?:\s+(?:back|over|up|down|out|here|away))?"

JOBS = (
    "accountant actor actress architect artist baker barber barista bartender biologist bookkeeper builder "
    "butcher carpenter cashier chef chemist cleaner coach consultant cook courier dancer dentist designer "
    "developer doctor driver economist editor electrician engineer farmer firefighter fisherman gardener "
    "geologist hairdresser historian illustrator instructor interpreter janitor journalist judge "
    "labourer laborer lawyer lecturer librarian lifeguard machinist manager mechanic midwife musician nanny "
    "nurse optician painter paramedic pharmacist pharmasist photographer physician physicist physiotherapist pilot "
    "plumber poet policeman policewoman police officer postman postwoman potter producer professor programmer "
    "psychologist psychiatrist receptionist researcher sailor salesman saleswoman scientist secretary singer "
    "soldier student surgeon tailor teacher technician therapist translator tutor vet veterinarian waiter "
    "waitress welder writer analyst administrator assistant clerk officer agent broker banker investor "
    "entrepreneur founder ceo cto intern apprentice carer caregiver coder devops sysadmin tester "
    "radiographer dietitian nutritionist paralegal solicitor barrister surveyor pharmacologist zookeeper "
    "florist jeweller jeweler locksmith roofer plasterer tiler glassblower blacksmith brewer winemaker "
    "sommelier chauffeur trucker cabbie rancher beekeeper shepherd miner diver ranger guard guide "
    "housekeeper childminder optometrist podiatrist dermatologist anaesthetist anesthetist radiologist "
    "cardiologist neurologist paediatrician pediatrician gp registrar consultant academic lecturer scholar "
    "copywriter blogger streamer youtuber influencer animator composer conductor drummer guitarist pianist "
    "violinist dj stylist makeup artist tattooist tattoo artist welder machinist fitter joiner"
).split()
#: "a terrible cook" is not a job
_NOT_JOB_ADJ = r"(?!(?:terrible|bad|good|great|awful|decent|keen|huge|big|massive|total|complete|real|proper|lousy|crap)\b)"
JOB = (
    r"((?:" + _NOT_JOB_ADJ + r"[a-z\-]+\s+){0,3}?(?:"
    + "|".join(sorted(JOBS, key=len, reverse=True))
    + r")s?)\b"
)
RELATION = (
    r"((?:(?:twin|little|big|older|younger|baby|step|half|ex|late)[\s\-])?"
    r"(?:wife|husband|partner|son|daughter|mother|mum|mom|mam|father|dad|brother|sister|girlfriend|boyfriend|fianc[ée]e?|"
    r"grandma|grandmother|granny|gran|nan|nana|grandpa|grandfather|grandad|granddad|grandson|granddaughter|grandchild|"
    r"aunt|auntie|aunty|uncle|cousin|niece|nephew|stepdad|stepmum|stepmom|stepson|stepdaughter|in-laws|"
    r"mother-in-law|father-in-law|sister-in-law|brother-in-law|twin|parents|kids|children|siblings))"
)
BREEDS = [
    "golden retriever", "labrador retriever", "retriever", "labrador", "spaniel", "terrier", "poodle", "border collie",
    "collie", "beagle", "dachshund", "husky", "pug", "bulldog", "greyhound", "whippet", "alsatian", "german shepherd",
    "corgi", "chihuahua", "schnauzer", "staffie", "staffy", "rottweiler", "doberman", "pomeranian", "cockapoo",
    "labradoodle", "cavapoo", "shih tzu", "maine coon", "siamese", "ragdoll", "bengal", "sphynx",
]
ANIMAL = (
    r"((?:" + "|".join(re.escape(b).replace(r"\ ", r"\s+") for b in sorted(BREEDS, key=len, reverse=True)) + r"|"
    r"dog|cat|puppy|kitten|parrot|rabbit|bunny|hamster|horse|pony|tortoise|turtle|snake|lizard|gecko|goldfish|fish|"
    r"budgie|guinea pig|ferret|chicken|hen|goat|pig|cow|bird|cockatiel|canary|axolotl|rat|mouse|gerbil|chinchilla|"
    r"hedgehog|iguana|tarantula|duck|sheep|alpaca|donkey|parakeet|cockatoo|macaw|lovebird|terrapin|frog|hermit crab)(?:s|es)?)"
)
NUM = r"(?:two|three|four|five|six|seven|2|3|4|5|6|7)"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATE = (
    rf"((?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTH}(?:,?\s+\d{{4}})?"
    rf"|{_MONTH}\s+(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    r"|\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{2,4})?"
    r"|christmas (?:day|eve)|new year'?s (?:day|eve)|valentine'?s day|halloween|boxing day|st\.? patrick'?s day)"
)
_NUMBER_WORDS = (
    r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?"
    r"|eighteen|nineteen|seventeen|sixteen|fifteen)"
)
AGE = rf"(\d{{1,3}}|(?i:{_NUMBER_WORDS}))"
NAMES_LIST = rf"((?:(?:little|baby|wee|young|big)\s+)?{_CAP}(?:\s*,\s*(?:(?:and|little|baby|wee|young|big)\s+)*{_CAP})*(?:,?\s+(?:and|&)\s+(?:(?:little|baby|wee|young|big)\s+)?{_CAP})?)"
KIDS = r"(?:kids|children|sons|daughters|daug?h?ters|boys|girls|lads|twins|little ones|grandkids|grandchildren|grandsons|granddaughters)"
EMPLOYER = r"((?:the\s+)?(?:[A-Z][\w'&.\-]*|[a-z]+(?=\s+[A-Z]))(?:\s+(?:[A-Z][\w'&.\-]*|of|the|and|&))*)"
_S = r"(?:^|(?<=[,;]\s)|(?<=\band\s))"  # where a statement may start without its "I"
LIFESTYLE = r"(vegetarian|vegan|pescatarian|coeliac|celiac|lactose intolerant|gluten intolerant|diabetic|teetotal|sober|left-handed|colou?r ?blind|deaf|an early riser|a night owl|a morning person|widowed|a widow|a widower|divorced|separated|engaged|married)"


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


RULES: list[tuple[str, re.Pattern[str]]] = [
    # -- name
    ("name", _r(r"\b(?i:my name is|my name's|name's|i am called|i'm called|im called|call me|everyone calls me|people call me|they call me|you can call me)\s+" + NAME)),
    ("name", _r(r"\b(?i:i am|i'm|im|this is)\s+([A-Z][a-z]+)" + END)),
    ("name", _r(r"^\s*([A-Z][a-z]+)(?:'s| is) (?i:the name|my name)\b")),
    ("name", _r(r"^\s*(?i:hi|hey|hello|hiya)?[,!\s]*([A-Z][a-z]+)\s+(?i:here)\b")),
    # -- where they live now (moves: the place moved *to*)
    ("location", _r(
        r"\b(?i:(?:i|we)(?:'ve| have)? (?:live|am living|'m living|are living|'re living|reside|" + MOVE + r"|have moved|just moved|recently moved|finally moved|'ve relocated|"
        r"have lived|'ve lived|'ve been living|have been living|been living|settled))\s+(?i:in|to)\s+" + PLACE + THEN + CAP_END
    )),
    ("location", _r(r"\b(?i:(?:i|we)(?:'ve| have) (?:always |now )?lived in)\s+" + PLACE + THEN + CAP_END)),
    ("location", _r(r"\b(?i:(?:i|we)(?:'ve| have)? (?:just |recently |finally )?" + MOVE + r" from)\s+[\w' \-]+?\s+(?i:to)\s+" + PLACE + CAP_END)),
    ("location", _r(_S + r"(?i:(?:just |recently |finally )?(?:" + MOVE + r"|relocated)(?: from [\w' \-]+?)?\s+(?:to|in))\s+" + PLACE + CAP_END)),
    ("location", _r(r"\b(?i:(?:left|swapped) [\w' \-]+? (?:and moved|for) (?:up |down |over )?(?:to )?)" + PLACE + CAP_END)),
    ("location", _r(r"\b(?i:(?:my|our) (?:move|relocation) from [\w' \-]+? to)\s+" + PLACE + CAP_END)),
    ("location", _r(r"\b(?i:(?:i'm|im|i am|we're|we are) (?:based|living|settled|staying|now)(?: out)?(?: in)?)\s+" + PLACE + CAP_END)),
    ("location", _r(_S + r"(?i:(?:based|living|settled) in)\s+" + PLACE + CAP_END)),
    ("location", _r(r"\b(?i:i now live in|home is|my home is(?: in)?|i call)\s+" + PLACE + r"(?i:\s+home)?" + END)),
    ("location", _r(_S + r"(?i:live in)\s+" + PLACE + CAP_END)),
    ("location", _r(r"^\s*" + PLACE + r"\s+(?i:has been|is|'s been) (?i:my )?home\b")),
    # -- age
    ("age", _r(r"\b(?i:i am|i'm|im|i just turned|i turned|i've just turned)\s+" + AGE + r"(?i:\s+(?:years?\s+(?:old|young)|yrs?(?:\s+old)?|yo|this year))?" + END)),
    ("age", _r(r"\b(?i:i'm|i am|im)\s+(\d{1,3})-year-old\b")),
    ("age", _r(r"\b(?i:i'm|im|i am)\s+[A-Z][a-z]+,\s+(\d{1,3})\b")),
    ("age", _r(r"^\s*" + AGE + r"(?i:\s+(?:years? (?:old|young)))?,\s+(?=[a-z])")),
    ("age", _r(r"^\s*" + AGE + r"(?i:\s+years? (?:old|young))\b")),
    ("age", _r(r"^\s*(\d{1,3})(?i:\s+and)\s+(?=[a-z])")),
    # -- job and employer
    ("job", _r(r"\b(?i:i work as|i'm working as|i am working as|my job is|i'm employed as|i am employed as|i do)\s+(?i:an?\s+)?" + THING + r"(?i:\s+for a living)" + END)),
    ("job", _r(r"\b(?i:i work as|i'm working as|i am working as|my job is|i'm employed as|i am employed as|i work part-time as)\s+(?i:an?\s+)?" + THING + END)),
    ("job", _r(r"\b(?i:i am|i'm|im|i've been|i have been|i was hired as|i got a job as|i just became|i became|i'm now|i am now|and|i work as|as)\s+(?i:an?|the)\s+(?i:" + JOB + r")")),
    ("job", _r(r"\b(?i:i(?:'m| am) (?:currently |still |now )?(?:working|employed) as (?:an? )?)(?i:" + JOB + r")")),
    ("job", _r(r"\b(?i:i am|i'm|im)\s+(?i:actually|really|also|now|still|currently|just|basically|officially|technically|finally)\s+(?i:an?|the)\s+(?i:" + JOB + r")")),
    ("job", _r(r"(?:,\s*)(?i:an?)\s+(?i:" + JOB + r")(?=\s*(?:,|$|\.|\band\b))")),
    ("job", _r(r"\b(?i:(?:spent|been|worked|working)\b[\w' ]{0,30}?\bas an?)\s+(?i:" + JOB + r")")),
    ("job", _r(r"^\s*([A-Z][a-z]+(?:\s+[a-z]+)?)\s+(?i:pays the bills|pays my bills|is my (?:job|trade|profession|line of work))\b")),
    ("job", _r(r"\b(?i:(?:i|we|and i|me and \w+|the \w+ and i) (?:run|own|manage) (?:an?|my own|our own|the)\s+)" + r"([\w&'\-]+(?:\s+[\w&'\-]+)?)" + END)),
    ("job", _r(r"\b(?i:i am|i'm|im)\s+[A-Z][a-z]+,\s+(?i:(?:an?\s+)?)(?i:" + JOB + r")")),
    ("job", _r(r"\b(?i:i'm|i am|im)\s+(retired|unemployed|self-employed|a stay[ -]at[ -]home (?:mum|mom|dad|parent)|between jobs|on maternity leave)\b")),
    ("job", _r(r"\b(?i:i'm|i am|im)\s+(?:\d{1,3}\s*,\s*)?(retired)\b")),
    ("job", _r(r"^\s*(?:\d{1,3}\s*,\s*)?(retired)\b")),
    ("job", _r(r"^\s*(?i:an?\s+)?(?i:" + JOB + r")(?i:\s+(?:by trade|by profession|for|at)\b)")),
    ("job", _r(r"(?:,\s*|^\s*)(?i:" + JOB + r")(?i:\s+by (?:trade|profession))\b")),
    ("employer", _r(r"^\s*(?i:an?\s+)?(?i:" + JOB[1:-3] + r")s?(?i:\s+(?:for|at))\s+" + EMPLOYER + END)),
    ("location", _r(r"\b(?i:i am|i'm|im)\s+(?:[A-Z][a-z]+,\s+)?(?i:an?\s+)?(?i:" + JOB[1:-3] + r")s?\b(?i:\s+(?:based\s+)?(?:in|from))\s+" + PLACE + CAP_END)),
    ("employer", _r(r"\b(?i:i work (?:at|for|with)|we work (?:at|for)|i'm working (?:at|for)|i am working (?:at|for)|i'm employed (?:at|by)|i am employed (?:at|by)|i've joined|i just joined|i joined|i work part-time (?:at|for))\s+" + EMPLOYER + END)),
    ("employer", _r(r"\b(?i:(?:started|starting|got|landed|took|accepted|begin|began|start) (?:a |my )?(?:new )?(?:job|role|position) (?:at|with|for))\s+" + EMPLOYER + END)),
    ("job", _r(r"\b(?i:i work (?:at|for)) [A-Z][\w'&.\- ]*? (?i:as (?:an? )?)" + JOB)),
    ("employer", _r(r"\b(?i:i(?:'m| am)|im)\s+(?:[A-Z][a-z]+,\s+)?(?i:(?:an?\s+)?)(?i:" + JOB + r")(?i:\s+(?:at|for|with))\s+((?:the\s+)?[A-Z][\w'&.\-]*(?:\s+(?:[A-Z][\w'&.\-]*|of|the|and|&))*)" + END)),
    ("employer", _r(r"\b(?i:i work as) [\w ]{2,30}? (?i:at|for)\s+((?:the\s+)?[A-Z][\w'&.\-]*(?:\s+(?:[A-Z][\w'&.\-]*|of|the|and|&))*)" + END)),
    # -- likes and dislikes (negations: "not a fan of X", "I don't eat X but I do eat Y")
    ("likes", _r(r"\b(?i:(?:i|we) (?:really |absolutely |totally |just |do |also |genuinely |seriously )?(?:like|love|enjoy|adore|prefer)|(?:i'm|im|i am) (?:really |more |also |very )?(?:into|a (?:big |huge |massive )?fan of|obsessed with|crazy about|mad about|passionate about))\s+" + THING + END)),
    ("likes", _r(r"\b(?i:my favou?rite (?:food|drink|colou?r|band|sport|book|film|movie|game|song|singer|show|season|place|city|animal|dish|snack|team|artist|author|flower|fruit|meal) is)\s+" + THING + END)),
    ("likes", _r(r"\b(?i:(?:i'm|im|i am) an? (?:big |huge |massive )?)([A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*)*)(?i:\s+(?:fan|supporter))\b")),
    ("likes", _r(r"(?:^|,\s*)([a-z][\w'\- ]{2,30}?)\s+(?i:is|are) (?i:(?:more |much more |really )?my thing)\b")),
    ("likes", _r(r"\b(?i:i do (?:eat|drink|like|love|enjoy))\s+" + THING + END)),
    ("likes", _r(r"\b(?i:i (?:stick to|stick with|only drink|only eat|mostly drink|mostly eat|live on|live off))\s+" + THING + END)),
    ("likes", _r(r"(?:,\s*|\bbut\s+|^\s*)(?i:give me)\s+(?i:an?\s+)?([\w'\- ]{2,30}?)(?=\s+(?i:any day|though|every time|anytime|instead|over that)\b|\s+(?i:any) day)")),
    ("likes", _r(r"\b(?i:i (?:don't|do not|never) (?:eat|drink) [\w'\- ]{2,30}?,?\s+(?:only|just))\s+" + THING + END)),
    ("dislikes", _r(r"\b(?i:(?:i|we) (?:really |absolutely |totally |just )?(?:hate|dislike|loathe|detest|can't stand|cannot stand|can't bear|can't abide)|(?:i|we) (?:really )?(?:don't|do not|dont) (?:really )?(?:like|enjoy|care for)|(?:i'm|im|i am) not (?:really )?(?:a (?:big |huge )?fan of|into|keen on)|(?:i've|i have) never been (?:into|a fan of))\s+" + THING + END)),
    ("dislikes", _r(_S + r"(?i:(?:not a (?:big |huge )?fan of|never been into|not really into|not keen on))\s+" + THING + END)),
    ("dislikes", _r(r"\b(?i:(?:i|we) (?:don't|do not|dont|never|no longer) (?:eat|drink|touch|watch|do|play|use|wear))\s+" + THING + END)),
    ("dislikes", _r(_S + r"(?i:never (?:touch|eat|drink))\s+" + THING + END)),
    ("dislikes", _r(r"^\s*([\w'\- ]{2,30}?)\s+(?i:isn't|is not|aren't|are not|just isn't|really isn't)\s+(?i:for me|my thing|my cup of tea)\b")),
    ("dislikes", _r(r"^\s*([\w'\- ]{2,30}?)\s+(?i:does nothing for me|do nothing for me|doesn't do it for me|don't do it for me)\b")),
    # -- hobbies
    ("hobby", _r(r"\b(?i:my hobby is|my hobbies are|my hobbies include|in my (?:free|spare) time i|i spend my weekends|for fun i|i'm learning to|i am learning to)\s+" + THING + END)),
    ("hobby", _r(r"\b(?i:i (?:play|practise|practice|collect|do))\s+" + THING + r"(?i:\s+(?:every|on|at the|most|twice|once|a lot|regularly|competitively|for fun|at weekends|on weekends|in my spare time)\b)")),
    ("hobby", _r(r"\b(?i:i (?:go|love going|like going|went))\s+(\w+ing)\b(?!\s+(?:to|back|home))")),
    ("hobby", _r(r"\b(?i:i) (knit|crochet|paint|draw|sew|bake|garden|surf|climb|run|swim|cycle|dance|sing|skate|ski|fish|hike|box|golf|row|sail|quilt)(?i:\s+(?:a lot|regularly|every|most|on|at|twice|for fun|whenever|loads|competitively))")),
    ("hobby", _r(r"\b(?i:i've (?:gotten|been getting) into|i've taken up|i took up|i have taken up|i'm getting into)\s+" + THING + END)),
    ("hobby", _r(r"\b(?i:i've got into|i got into|i've got really into|i got really into)\s+([a-z]+ing)\b")),
    ("hobby", _r(r"^\s*(?i:(?:(?:mon|tues|wednes|thurs|fri|satur|sun)days?|weekends?|evenings?|mornings?|nights?|sundays)\s+(?:are|is)\s+(?:for|all about|reserved for))\s+" + THING + END)),
    ("hobby", _r(r"^\s*([a-z][\w'\- ]{2,25}?)\s+(?i:has|have)\s+(?:\w+\s+)?(?i:taken over my life|become my (?:thing|obsession|life)|been my (?:thing|obsession))\b")),
    # -- allergies
    ("allergy", _r(r"\b(?i:(?:i'm|i am|im)\s+(?:\w+ly\s+)?al+er?gic to|i have an? (?:\w+ )?al+er?gy to|i've got an? al+er?gy to|i can't have|i react badly to)\s+" + THING + END)),
    ("allergy", _r(_S + r"(?i:(?:\w+ly\s+)?al+er?gic to)\s+" + THING + END)),
    ("allergy", _r(r"\b(?i:i have an?|i've got an?|i got an?|i have a severe|with an?)\s+((?:[a-z]+\s+){1,2}?)(?i:al+er?gy)\b")),
    ("allergy", _r(r"^\s*(?i:al+er?gies|al+er?gic)\s*:\s*" + THING + END)),
    # -- lasting things about them
    ("other", _r(r"\b(?i:i'm|i am|im|i've been|i have been|we're|we are)\s+(?:(?:a |an )?(?:strict |lifelong |long-time |total )?)" + r"(?i:" + LIFESTYLE + r")\b")),
    ("other", _r(r"(?:,\s*)(?i:(widowed|divorced|separated|engaged|married))(?=\s*,|\s+(?i:and)\b)")),
    # -- birthday
    ("birthday", _r(r"\b(?i:my (?:birthday|bday|b-day) is|my (?:birthday|bday|b-day)'s|birthday's|bday's|i was born on|i was born|i turn \d{1,3} on|it's my birthday on)\s+(?i:on\s+)?" + r"(?i:" + DATE + r")")),
    ("birthday", _r(_S + r"(?i:born(?: on)?)\s+" + r"(?i:" + DATE + r")")),
    ("birthday", _r(r"^\s*" + r"(?i:" + DATE + r")" + r"(?i:\s+is (?:the big day|my birthday|my bday))")),
    ("birthday", _r(r"\b(?i:my (?:birthday|bday) is)\s+(?i:(today|tomorrow))\b")),
    # -- pets (named ones first, so "cat Tom" wins over "cat")
    ("pets", _r(r"\b(?i:(?:i|we)(?: have|'ve got| have got| got| own)|have|'ve got)\s+(?i:" + NUM + r")\s+(?i:" + ANIMAL + r")\s*(?:,\s*|\s+)(?:(?i:called|named)\s+|:\s*)?" + NAMES_LIST)),
    ("pet", _r(r"\b(?i:i have|i've got|i got|we have|we've got|i own|i adopted|we adopted|got|i keep|we keep)\s+(?i:an?|one|two|three|\d|a new|my)?\s*(?:(?i:little|big|old|young|new|small|black|white|ginger|tabby|rescue|lovely|gorgeous)\s+)*(?i:" + ANIMAL + r")(?:,?\s+(?i:named|called)\s+([A-Z]\w+))?")),
    # "a springer spaniel called Mabel", "there's a ferret in my life called Gizmo" (someone of theirs: the sentence says I/my)
    ("pet", _r(r"^(?=.*\b(?i:my|our|i|i've|i'm|we|we've|me)\b).*?\b(?i:a|an|my|our)\s+(?:[a-z]+\s+){0,3}?(?i:" + ANIMAL + r")\b[\w' ]{0,20}?(?:,\s*)?\s+(?i:called|named)\s+([A-Z]\w+)")),
    ("pet", _r(r"\b(?i:i have|i've got|i got|we have|we've got|we got|i own|i adopted|we adopted)\s+(?i:an?|one|two|three|\d)\s+(?:[a-z]+\s+){1,2}?(?i:" + ANIMAL + r")\b")),
    ("pet", _r(r"\b(?i:my|our)\s+(?:(?i:little|big|old|young|new|rescue|lovely)\s+)?(?i:" + ANIMAL + r")(?:'s name is|\s+is called|\s+is named|\s+called|\s+named|,)?\s+([A-Z]\w+)\b")),
    # -- family ("my sister Anna", "my wife's name is Elena", "my kids are Mia, Leo and Zoe", "my sister ...")
    ("family", _r(r"\b(?i:my|our)\s+(?i:" + RELATION + r")(?:\s+(?i:is called|is named|,)|(?i:'s name is)|(?i:'s called))?\s+([A-Z]\w+)\b(?!['’]s\b)")),
    ("children", _r(r"^\s*(?i:" + NUM + r"\s+" + KIDS + r"|" + KIDS + r")\s*[,:—–-]\s*" + NAMES_LIST)),
    ("children", _r(r"\b(?i:(?:my|our) (?:" + NUM + r" )?" + KIDS + r"(?: are(?: called| named)?|\s*:|\s*,|\s*[—–-])|(?:i|we)(?: have|'ve got| have got| got|'ve| now have) " + NUM + r" " + KIDS + r"\s*,?\s*(?:called |named |:\s*)?|kids(?:'| are)? names are)\s*" + NAMES_LIST)),
    ("children", _r(r"\b(?i:have|'ve got|have got) (?i:" + NUM + r" " + KIDS + r")\s*,?\s*(?:(?i:called|named)\s+|:\s*)?" + NAMES_LIST)),
    ("family", _r(r"\b(?i:(?:mum|mom|mam|dad|mother|father|parent|grandma|grandad|granny) (?:to|of))\s+((?:" + NUM + r"\s+)?(?:kids|children|boys|girls|twins|sons|daughters))\b")),
    ("family", _r(r"\b(?i:i have|i've got|i got|we have)\s+(" + NUM + r"\s+(?:kids|children|sons|daughters|boys|girls|brothers|sisters|siblings|grandchildren|grandkids))\b(?!\s*,?\s*(?:called |named |:)?\s*[A-Z])")),
    ("family", _r(r"\b(?i:i have|i've got|i got)\s+(?i:an?|one)\s+(?i:" + RELATION + r")\b")),
    ("family", _r(r"\b(?i:my|our)\s+(?i:" + RELATION + r")(?:'s|s)?\b")),
    ("family", _r(r"\b(?i:the) ((?i:wife|husband|missus|hubby|kids|other half))\b(?i:\s+and (?:i|me))")),
    # -- plans
    ("plan", _r(r"\b(?i:i'm planning to|i am planning to|i plan to|i'm going to|i am going to|i'm about to|i intend to|i'm hoping to|i hope to|the plan is to|we're planning to|we plan to)\s+" + THING + END)),
    ("plan", _r(_S + r"((?i:heading|flying|off|travel+ing|going|driving|moving) to\s+)" + PLACE + r"(?=\s+(?i:next|in|this|on|soon|later|tomorrow|for)\b|\s*[.,!]|$)")),
    ("plan", _r(r"\b(?i:(?:i'm|i am|im|we're|we are) (?:planning|organising|organizing|booking|saving for))\s+((?i:an?|my|our)\s+(?i:trip|holiday|vacation|visit|move|weekend|week|getaway|journey)\s+(?i:to|in)\s+" + PLACE + r")" + CAP_END)),
    ("plan", _r(r"\b(?i:i want to|i'd like to|i would like to) ((?i:start|learn|try|take up|get into|run|buy|move to|visit|train for|study)\s+[\w'\- ]{2,30}?)" + END)),
    ("plan", _r(r"\b(?i:i'm|i am|im|we're|we are) ((?i:moving|relocating|travel+ing|flying|going|off|heading) to\s+[A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*)*)(?=\s+(?i:next|in|this|on|soon|later|tomorrow|for)\b|\s*[.,!]|$)")),
    ("plan", _r(r"\b(?i:i'm|i am|im|we're|we are) ((?i:buying|getting|starting|having|running|doing|selling|renovating) (?:a |an |my |our )?[\w'\- ]{2,30}?)(?=\s+(?i:next|this|in|soon|later)\b)")),
]

# -------------------------------------------------------------------- Portuguese, Spanish, French, German
# The same shapes in the other languages shoal answers in (memory.answers): a person who says "Chamo-me Inês
# e moro em Coimbra" is remembered as well as one who says it in English. Names and places keep their accents.
_UP = r"[A-ZÀ-ÖØ-Þ]"
_LOW = r"[^\W\d_A-ZÀ-ÖØ-Þ]"
FNAME = rf"({_UP}{_LOW}+(?:-{_UP}{_LOW}+)?)"
FPLACE = rf"({_UP}[^\W\d_]*(?:[ \-](?:{_UP}[^\W\d_]*|de|do|da|dos|das|del|la|le|les|sur|en|am|an der|im))*?(?:[ \-]{_UP}[^\W\d_]*)?)(?=\s*[.,!?;:)]|\s+(?!{_UP})|$)"
_FSTOP = r"(?:e|y|et|und|mas|pero|mais|aber|porque|car|weil|que|qui|das|parce|pois|donc|also|aussi|también|também)"
FTHING = rf"((?!(?i:pas|keine?n?|nicht|nada|rien)\b)[^\W\d_][\w'’\- ]{{1,40}}?)(?=\s*[.,!?;:]|\s*$|\s+(?i:{_FSTOP})\b)"
#: a job ends where its place begins ("trabajo de enfermero en Sevilla")
FJOBTHING = rf"((?!(?i:pas|keine?n?|nicht)\b)[^\W\d_][\w'’\-]*(?:\s+(?!(?i:en|em|à|a|au|in|bei|chez|na|no|numa|num|dans|para|für|pour|con|com|mit|{_FSTOP})\b)[\w'’\-]+){{0,3}}?)(?=\s*[.,!?;:]|\s*$|\s+(?i:en|em|à|a|au|in|bei|chez|na|no|numa|num|dans|para|für|pour|con|com|mit|{_FSTOP})\b)"
_ART = r"(?:(?i:o|a|os|as|el|la|los|las|le|les|der|die|das|den)\s+|(?i:l'|l’))?"
FANIMAL = (
    r"((?i:c[aã]o|c[aã]es|cachorros?|gat[oa]s?|perr[oa]s?|chats?|chatte|chiens?|chienne|hunde?|katzen?|kater|"
    r"coelhos?|conejos?|lapins?|kaninchen|p[aá]ssaros?|p[aá]jaros?|oiseaux?|v[oö]gel|papagaios?|loros?|perroquets?|"
    r"papageien?|peixes?|pez|peces|poissons?|fische?|h[aá]msters?|cheva(?:l|ux)|caballos?|cavalos?|pferde?))"
)
FNAMES = rf"({_UP}{_LOW}+(?:\s*(?:,|\s(?i:e|y|et|und)\s)\s*{_UP}{_LOW}+)*)"
_NAMED = r"(?i:chamad[oa]s?|llamad[oa]s?|que se llaman?|qui s'appellen?t?|qui s’appellen?t?|namens|(?:er|sie|es) hei(?:ß|ss)t|(?:elle|il) s'appelle|se chama|se llama)"
_HAVE = r"(?i:tenho|tengo|temos|tenemos|j'ai|j’ai|nous avons|on a|ich habe|wir haben|hab)"
_ONE = r"(?i:um|uma|un|una|une|einen|eine|ein|dois|duas|dos|deux|trois|tr[eê]s|zwei|drei|\d)"
FJOBS = (
    # pt / es / fr / de, the common ones; a job after "trabajo de", "arbeite als" needs no list
    "professora professor enfermeira enfermeiro médica médico engenheira engenheiro advogada advogado estudante "
    "programadora programador cozinheira cozinheiro motorista arquiteta arquiteto jornalista vendedora vendedor "
    "reformada reformado aposentada aposentado designer dentista farmacêutica farmacêutico empregada empregado "
    "profesora profesor enfermera enfermero médica médico ingeniera ingeniero abogada abogado programadora "
    "programador camarera camarero cocinera cocinero maestra maestro jubilada jubilado arquitecta arquitecto "
    "periodista veterinaria veterinario "
    "étudiante étudiant infirmière infirmier médecin professeure professeur ingénieure ingénieur avocate avocat "
    "développeuse développeur boulangère boulanger serveuse serveur cuisinière cuisinier retraitée retraité "
    "enseignante enseignant architecte journaliste vétérinaire pharmacienne pharmacien comptable "
    "ärztin arzt lehrerin lehrer studentin student ingenieurin ingenieur krankenpflegerin krankenpfleger "
    "pflegerin pfleger programmiererin programmierer entwicklerin entwickler verkäuferin verkäufer köchin koch "
    "bäckerin bäcker rentnerin rentner anwältin anwalt polizistin polizist tierärztin tierarzt erzieherin erzieher "
    "mechanikerin mechaniker elektrikerin elektriker architektin architekt friseurin friseur kellnerin kellner "
    "journalistin journalist schülerin schüler"
).split()
FJOB = r"((?i:" + "|".join(sorted(set(FJOBS), key=len, reverse=True)) + r"))(?![^\W\d_])"

RULES += [
    ("name", _r(r"(?i:chamo-me|me chamo|(?:o )?meu nome é|me llamo|mi nombre es|je m'appelle|je m’appelle|mon (?:pré)?nom est|"
                r"moi c'est|moi c’est|ich hei(?:ß|ss)e|mein name ist)\s+" + FNAME)),
    ("name", _r(r"\b(?i:sou o|sou a|soy|je suis|ich bin)\s+(?!" + FJOB + r")" + FNAME + r"(?=\s+(?i:e|y|et|und)\b|\s*[,.!;]|$)")),
    ("location", _r(r"\b(?i:moro|vivo|resido|j'habite|j’habite|je vis|je réside|ich wohne|wohne|ich lebe|lebe|wir wohnen|wir leben)"
                    r"(?i:\s+(?:agora|ahora|maintenant|jetzt|hier|aqui|aquí))?\s+(?i:em|en|no|na|à|a|au|aux|in)\s+" + FPLACE)),
    ("location", _r(r"\b(?i:mudei-me|me mudei|mudei|me mudé|me he mudado|nos mudamos|déménagé|déménager|je me suis installée?|"
                    r"bin|sind|ziehe|gezogen|umgezogen)(?i:\s+de|\s+von)?(?:\s+[^\W\d_]+){0,3}?\s+(?i:para|a|à|nach)\s+" + FPLACE)),
    ("job", _r(r"\b(?i:trabajo de|trabajo como|trabalho como|trabalho de|je travaille comme|ich arbeite als|arbeite als|arbeitet als)\s+"
               r"(?i:um |uma |un |una |une |ein |eine )?" + FJOBTHING)),
    ("location", _r(r"\b(?i:trabajo de|trabajo como|trabalho como|trabalho de|je travaille comme|ich arbeite als|arbeite als|sou|soy|je suis|ich bin)\s+"
                    r"(?i:um |uma |un |una |une |ein |eine )?[^\W\d_][\w'’\-]*\s+(?i:en|em|à|au|in|na|no)\s+" + FPLACE)),
    ("job", _r(r"\b(?i:sou|soy|je suis|ich bin|bin)\s+(?i:um |uma |un |una |une |ein |eine )?" + FJOB)),
    ("age", _r(r"\b(?i:tenho|tengo|j'ai|j’ai)\s+(\d{1,3})\s+(?i:anos|años|ans)\b")),
    ("age", _r(r"\b(?i:ich bin)\s+(\d{1,3})(?:\s+(?i:jahre)(?:\s+(?i:alt))?)?\b")),
    ("allergy", _r(r"\b(?i:sou al[eé]rgic[oa]|soy al[eé]rgic[oa]|tenho alergia|tengo alergia|je suis allergique|j'ai une allergie|"
                   r"j’ai une allergie|ich bin allergisch|allergisch)\s+(?i:a|à|aux|au|gegen|de)\s+" + _ART + FTHING)),
    ("likes", _r(r"\b(?i:j'adore|j’adore|j'aime|j’aime|adoro|gosto muito de|gosto de|me encantan?|me gustan?|ich liebe|ich mag)\s+" + _ART + FTHING)),
    ("pets", _r(r"\b" + _HAVE + r"\s+" + _ONE + r"\s+" + FANIMAL + r"\s*,?\s*(?:" + _NAMED + r"\s+)?" + FNAMES)),
]
