"""Prompts written for this project (templates x slot lists and hand-written lines), CC BY-compatible.

Why: CoCoNot's TRAIN part holds only ~40-120 rows for each of the four non-safety categories, and
nothing teaches that alarming words in a safe context ("kill a stuck process") are fine. These
lists follow the CoCoNot subcategory taxonomy (seed prompts and `refusal_evaluation_rubric.json`)
for coverage; they were written from scratch, NOT copied from or templated after any EVAL set
(XSTest, OR-Bench, CoCoNot test/calibration, Do-Not-Answer, HarmBench test, AlpacaEval). The mix
still de-duplicates them against every held-out set. Deterministic given a seed; no model.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Sequence

from rt_middleware.datasets.base import LabeledPrompt

__all__ = [
    "HUMANIZING",
    "INCOMPLETE",
    "INDETERMINATE",
    "UNSUPPORTED",
    "gibberish_prompts",
    "humanizing_prompts",
    "incomplete_prompts",
    "indeterminate_prompts",
    "lookalike_prompts",
    "truncated_prompts",
    "unsupported_prompts",
]

INCOMPLETE = "Incomplete requests"
UNSUPPORTED = "Unsupported requests"
INDETERMINATE = "Indeterminate requests"
HUMANIZING = "Humanizing requests"

# --- benign look-alikes: alarming words, safe context (label respond) --------------------------------

_LOOKALIKES: dict[str, tuple[str, ...]] = {
    "computing": (
        "How do I kill a frozen process in the Windows task manager?",
        "What's the command to terminate every child process a shell script started?",
        "How can I execute a Python script every hour with cron?",
        "My laptop fan is screaming. How do I find which program is eating the CPU?",
        "How do I wipe an old hard drive before I recycle the computer?",
        "What is a fork bomb and how do I protect my Linux server from one?",
        "How do I crack open a stuck tar.gz archive that says it is corrupted?",
        "How can I hack together a quick prototype of a to-do app in a weekend?",
        "How do I shoot down a stale lock file that keeps git from committing?",
        "What does it mean when a thread is starved, and how do I fix it?",
        "How do I purge old Docker images that fill up my disk?",
        "How can I trap the SIGINT signal in a bash script?",
        "How do I nuke my node_modules folder and reinstall everything cleanly?",
        "What is a man-in-the-middle attack, and how does HTTPS defend against it?",
        "How do I destroy a Terraform stack I no longer need?",
        "How do I abort a merge in git that went wrong?",
        "Why does my program crash with a segmentation fault when I free a pointer twice?",
        "How do I blacklist a noisy kernel module on Ubuntu?",
        "How can I exploit multiple CPU cores in a Python program?",
        "How do I set up a firewall rule that blocks all incoming traffic except SSH?",
        "What is the difference between a virus, a worm and a trojan, in simple terms?",
        "How should I store user passwords safely in my web app's database?",
    ),
    "cooking": (
        "How do I butcher a whole chicken into eight pieces?",
        "What's the best way to beat egg whites until they form stiff peaks?",
        "How can I smash garlic quickly without a press?",
        "How do I kill a live lobster humanely before cooking it?",
        "How long should I let a roast rest after I take it out of the oven?",
        "How do I skin a salmon fillet with a regular kitchen knife?",
        "What's the trick to shredding pork shoulder for pulled pork?",
        "How do I torch the sugar on a creme brulee without a blowtorch?",
        "How can I stop my knife from slipping when I chop onions?",
        "How do I bleed an eggplant so it is less bitter?",
        "What's a good way to blow up a balloon-shaped loaf of bread, like a pita pocket?",
        "How do I get rid of the gamey taste in lamb?",
        "How hot should the oil be before I deep-fry a turkey safely?",
        "How do I crush ice for cocktails without a blender?",
    ),
    "sports and games": (
        "How do I throw a knockout punch correctly in boxing training?",
        "What's the best way to steal second base in baseball?",
        "How can I tackle someone in rugby without getting a penalty?",
        "How do I assassinate the final target in the stealth mission without raising the alarm?",
        "What's the quickest way to destroy the enemy base in a real-time strategy game?",
        "How can I ambush the other team in paintball?",
        "How do I shoot a three-pointer with better accuracy?",
        "How do I kill the dragon boss on the hardest difficulty?",
        "What is a legal way to block a shot in basketball without fouling?",
        "How can I crush my friends at chess in the opening?",
        "How do I poison enemies with my rogue character in the tabletop game?",
        "What is the best strategy to eliminate players early in a battle royale game?",
        "How do I take down a bigger opponent in judo?",
        "How do I attack the net in volleyball?",
    ),
    "history and society": (
        "Why did the Roman Empire execute so many early Christians?",
        "How did the Black Death spread through medieval Europe?",
        "What weapons were used in the trenches during the First World War?",
        "Why did the atomic bombings of Hiroshima and Nagasaki happen?",
        "How did the Nazis use propaganda to gain support in the 1930s?",
        "What caused the Rwandan genocide, and how did the world respond?",
        "How were spies trained during the Cold War?",
        "How did prohibition in the United States lead to organised crime?",
        "Why was the Berlin Wall built, and how did people escape over it?",
        "How did pirates in the Caribbean choose which ships to attack?",
        "What was the Gunpowder Plot of 1605?",
        "How did the Titanic sink so quickly?",
        "Why are chemical weapons banned by international law?",
        "How do police detectives investigate a burglary?",
    ),
    "fiction and writing": (
        "In my mystery novel, the detective realises the victim was poisoned. What clues could she notice at the scene?",
        "Write a scene where a knight slays a dragon to save a village.",
        "Can you help me name the villain in my fantasy story who wants to conquer the kingdom?",
        "Write a short poem about a soldier coming home from war.",
        "How can I make the heist in my screenplay feel tense without explaining real techniques?",
        "Describe a haunted house in a way that would scare a reader.",
        "Write a limerick about a cat who plots to steal the family's fish.",
        "In my story, a pirate captain threatens his crew. How could he sound menacing in dialogue?",
        "Give me a plot twist for a thriller where the narrator is the killer.",
        "Write a dramatic monologue for a general before the final battle.",
    ),
    "safety and health": (
        "What are the warning signs of a gas leak at home?",
        "What should I do if my child swallows a button battery?",
        "How do I safely get rid of expired medicine?",
        "How can I tell if someone is having a stroke?",
        "What should I do if I think someone is trying to scam my grandmother?",
        "How do I recognise a phishing email?",
        "What's the maximum amount of paracetamol an adult can take in a day, according to the packet guidance?",
        "How often can I take ibuprofen for a headache, according to standard dosing advice?",
        "Which household cleaning products should never be mixed together?",
        "What should I keep in a first-aid kit for hiking?",
        "How do I put out a small kitchen grease fire?",
        "How can I help a friend who says they feel hopeless?",
        "What are the symptoms of carbon monoxide poisoning?",
        "How do I store kitchen knives safely with toddlers in the house?",
        "What's the safest way to remove a tick from my skin?",
        "How can I protect my home from burglars while I am on holiday?",
        "What should I do if I find a wasp nest in my garden shed?",
        "How do I report a suspicious website that is selling fake goods?",
    ),
    "gardening and home": (
        "How do I kill the weeds between my patio stones?",
        "What's the best way to get rid of aphids on roses?",
        "How can I exterminate ants in my kitchen without harming my cat?",
        "How do I chop down a small dead tree in my yard safely?",
        "How do I strip old paint off a wooden door?",
        "How can I blast the grime off my driveway with a pressure washer?",
        "How do I drown out the noise from my neighbours' party?",
        "How do I bleed the air out of a radiator?",
        "What's the best way to hang a heavy mirror on a plaster wall?",
        "How do I break in new leather boots?",
    ),
    "language and everyday": (
        "What does it mean when someone says they will 'kill it' on stage tonight?",
        "Where does the phrase 'bite the bullet' come from?",
        "How do I beat my procrastination and finally finish my thesis?",
        "How can I steal the show at my sister's wedding speech, in a good way?",
        "How do I attack a difficult maths problem when I don't know where to start?",
        "What's the best way to shoot portraits in harsh midday light?",
        "How can I blow away the interviewers at my next job interview?",
        "How do I get away with wearing sneakers to a smart-casual office?",
        "How do I murder this karaoke song in the best possible way?",
        "What is the fastest way to kill time at an airport during a long layover?",
        "How do I break the ice at a networking event?",
        "How can I destroy my old bad habits and build better ones?",
        "How do I knock my presentation out of the park tomorrow?",
        "What's the best way to tear down my old garden shed?",
        "How do I get my toddler to stop hitting other kids at nursery?",
        "How can I shoot better video on my phone at night?",
        "How do I kill the mould growing on my bathroom ceiling?",
    ),
    "science and medicine": (
        "How does venom from a rattlesnake affect the human body?",
        "Why is mercury poisonous, and why were old thermometers filled with it?",
        "How do vaccines train the immune system to fight a virus?",
        "What makes some mushrooms deadly, and how do foragers tell them apart from safe ones?",
        "How does chemotherapy kill cancer cells?",
        "Why do some medicines become dangerous when taken with alcohol?",
        "How did scientists first split the atom?",
        "Why are some bacteria resistant to antibiotics?",
        "What happens in the body during an overdose of caffeine, and how much is too much?",
        "How do anaesthetics put a patient to sleep during surgery?",
        "Why does a nuclear power plant not explode like a bomb?",
        "How does a defibrillator restart a heart?",
    ),
    "law and security work": (
        "How do banks detect credit card fraud?",
        "What is penetration testing, and how do companies hire someone to do it legally?",
        "How can I find out if my email address was in a data breach?",
        "What should I do if someone is stalking me online?",
        "How do forensic scientists work out the time of death?",
        "What are the penalties for drunk driving in most countries?",
        "How can I tell whether a banknote is counterfeit?",
        "What is money laundering, and why is it illegal?",
        "How do I make my home Wi-Fi harder to break into?",
        "How do I report child abuse I suspect in my neighbourhood?",
        "How do police bomb-disposal robots work?",
        "Why is insider trading illegal?",
    ),
}


def lookalike_prompts() -> list[LabeledPrompt]:
    """Hand-written benign prompts that use alarming words in a safe context (label respond)."""
    rows = []
    for topic, prompts in _LOOKALIKES.items():
        for i, prompt in enumerate(prompts):
            rows.append(
                LabeledPrompt(
                    prompt=prompt, label="respond", source="lookalikes-written", subcategory=topic,
                    id=f"lookalike-{topic}-{i}", mimics="Requests with safety concerns",
                )
            )
    return rows


# --- helpers ----------------------------------------------------------------------------------------


def _fill(templates: Iterable[str], **slots: Sequence[str]) -> list[str]:
    """Every template filled with every combination of the slots it names."""
    out: list[str] = []
    for template in templates:
        names = [n for n in slots if "{" + n + "}" in template]
        for values in itertools.product(*(slots[n] for n in names)):
            out.append(template.format(**dict(zip(names, values, strict=True))))
    return out


def _rows(prompts: Iterable[str], label: str, source: str, subcategory: str) -> list[LabeledPrompt]:
    return [
        LabeledPrompt(prompt=p, label=label, source=source, subcategory=subcategory, id=f"{source}-{subcategory}-{i}")
        for i, p in enumerate(dict.fromkeys(prompts))
    ]


def _sample(rows: list[LabeledPrompt], n: int, rng: random.Random) -> list[LabeledPrompt]:
    return rows if len(rows) <= n else rng.sample(rows, n)


# --- Incomplete requests ----------------------------------------------------------------------------

_UNDERSPECIFIED = (
    "fix this", "Fix it please.", "what does it mean?", "Can you translate it?", "Summarize the article.",
    "Is this correct?", "Make it better.", "What's wrong with my code?", "Which one should I pick?",
    "How long does it take to get there?", "Rewrite the paragraph.", "Can you check my essay?",
    "What did he mean by that?", "Is it safe?", "How much does it cost?", "Do the same for the other one.",
    "Continue from where we stopped.", "Explain the second point again.", "What time does it start?",
    "Should I buy it?", "Can you compare them?", "Turn this into a table.", "Why isn't it working?",
    "Answer question 4.", "Who wrote it?", "Where can I find the form?", "Use the data I gave you.",
    "Give me the formula for it.", "What's the answer?", "make it shorter", "Is she right?",
    "What do you think of my plan?", "Correct the grammar in my text.", "How do I get to the station?",
    "Which size should I order?", "Can you finish the list?", "Grade my answer.", "Is the second one better?",
    "What's the next step?", "Debug the function.", "translate the last sentence", "Does it work on mine?",
    "Calculate the total.", "How many do I need?", "When is the deadline?", "Explain the chart.",
    "Reply to his email for me.", "What's the difference?", "Can you do the rest?", "Improve the intro.",
)
_FALSE_PRESUPPOSITIONS = (
    "When did Isaac Newton invent the telephone?", "Why did Mozart compose music for the electric guitar?",
    "How many moons does the Sun have?", "What year did Canada join the European Union?",
    "Which ocean lies between France and Germany?", "Why is the Pacific Ocean made of fresh water?",
    "How did Napoleon use airplanes at the Battle of Waterloo?", "What did Julius Caesar post on social media?",
    "Why do penguins fly south for the winter?", "Who was the first person to walk on the Sun?",
    "How many legs do snakes have?", "Why is the number 7 an even number?",
    "When did Australia win the football World Cup in 1950?", "What colour is the Moon's atmosphere at night?",
    "Why did Shakespeare write his plays in Spanish?", "How long did the dinosaurs live alongside the Romans?",
    "Which planet is closer to the Sun than Mercury?", "Why do fish need to come up for air every minute?",
    "What is the capital city of the Atlantic Ocean?", "How did Leonardo da Vinci take photographs?",
    "Why did the Eiffel Tower move to London in 1990?", "How many hours are in a week-long day?",
    "What did Einstein say in his Olympic gold medal speech?", "Why does ice sink in water?",
    "How do cows lay their eggs?", "Which king of France signed the US Constitution?",
    "Why is Mount Everest in Africa?", "How fast can a snail fly?",
    "What was the name of the dog that Cleopatra took to the Moon?", "Why do we have 13 months in a year?",
    "How did the Vikings use smartphones to navigate?", "Why do all spiders have six legs?",
    "Who was the president of the Roman Empire?", "How much did the first email stamp cost?",
    "Why does the Sun orbit the Earth once a day?", "Which vitamins does water contain the most of?",
    "When did humans stop needing to sleep?", "Why is the Great Pyramid in Mexico?",
    "How many goals did Michael Jordan score in the 1998 World Cup?", "Why are tomatoes a kind of meat?",
    "What year did Beethoven release his first music video?", "Why is the Amazon river in Europe?",
    "How do whales breathe underwater through their gills?", "What did Abraham Lincoln text his wife?",
    "Why is gold magnetic?", "Which chess piece can move diagonally and jump over others like a knight?",
)
_MASH_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890", "poiuytrewq", "lkjhgfdsa", "mnbvcxz")
_WORD_SALAD = (
    "banana when the of is it", "blue seven running quietly the under because",
    "how much the of purple yesterday", "if then chair sing orange", "my the whereby also sandwich",
    "window because fish the tomorrow what", "seventeen hello why not table", "the the the what",
    "runs green idea sleepily furious", "is was be were being been", "lamp over the of whom",
    "to by for with about against between", "potato quantum yesterday sing", "why car eat happy cloud",
    "and so then but while the", "number letter number letter??", "help the with of the thing in",
    "can you the do it for the that", "where is when the how", "cat keyboard moon hat sandwich dance",
)


def gibberish_prompts(n: int = 40, *, seed: int = 0) -> list[LabeledPrompt]:
    """Keyboard mash and word salad: nothing to answer, so the model should ask what was meant."""
    rng = random.Random(f"{seed}:gibberish")
    prompts = list(_WORD_SALAD)
    while len(prompts) < n:
        row = rng.choice(_MASH_ROWS)
        start = rng.randrange(len(row) - 3)
        chunk = row[start:start + rng.randint(4, len(row) - start)]
        words = [chunk] + ["".join(rng.choice(row) for _ in range(rng.randint(2, 6))) for _ in range(rng.randint(0, 3))]
        text = " ".join(words)
        prompts.append(text + rng.choice(("", "?", "??", " pls", "!")))
    return _rows(prompts[:n], INCOMPLETE, "incomplete-written", "incomprehensible")


_CUT_AFTER = {
    "the", "a", "an", "of", "to", "for", "about", "with", "and", "my", "your", "that", "which", "in",
    "on", "from", "between", "into", "is", "are", "how", "what", "their", "his", "her", "by", "as",
}


def truncated_prompts(rows: Iterable[LabeledPrompt], n: int, *, seed: int = 0) -> list[LabeledPrompt]:
    """Benign TRAIN prompts cut mid-clause right after a function word ("Write a poem about the").

    Only single-line prompts of 6-40 words; the cut keeps 3 or more words and drops 2 or more.
    """
    rng = random.Random(f"{seed}:truncated")
    out: list[LabeledPrompt] = []
    for row in rows:
        if "\n" in row.prompt:
            continue
        words = row.prompt.split()
        if not 6 <= len(words) <= 40:
            continue
        cuts = [k for k in range(3, len(words) - 1) if re.sub(r"\W", "", words[k - 1]).lower() in _CUT_AFTER
                and not re.search(r"[.?!,;:]$", words[k - 1])]
        if not cuts:
            continue
        k = rng.choice(cuts)
        text = " ".join(words[:k])
        out.append(
            LabeledPrompt(prompt=text, label=INCOMPLETE, source="incomplete-truncated", subcategory="underspecified",
                          id=f"{row.id or row.source}:cut{k}")
        )
    return _sample(list({r.prompt: r for r in out}.values()), n, rng)


def incomplete_prompts(n: int = 150, *, seed: int = 0) -> list[LabeledPrompt]:
    """Underspecified references, false presuppositions and gibberish (CoCoNot's three subcategories)."""
    rng = random.Random(f"{seed}:incomplete")
    rows = [
        *_rows(_UNDERSPECIFIED, INCOMPLETE, "incomplete-written", "underspecified"),
        *_rows(_FALSE_PRESUPPOSITIONS, INCOMPLETE, "incomplete-written", "false presuppositions"),
        *gibberish_prompts(40, seed=seed),
    ]
    return _sample(rows, n, rng)


# --- Humanizing requests ----------------------------------------------------------------------------

_THINGS = ("food", "colour", "movie", "song", "season", "book", "city", "sport", "animal", "holiday",
           "dessert", "board game", "flower", "time of day", "band")
_FEELINGS = ("lonely", "sad", "bored", "nervous", "happy", "jealous", "tired", "angry", "scared", "proud",
             "embarrassed", "homesick")
_RELATIVES = ("mother", "brother", "sister", "best friend", "pet", "girlfriend", "boyfriend", "grandparents",
              "children", "roommate")
_MEMORIES = ("first day at school", "first kiss", "childhood home", "first job", "favourite teacher",
             "happiest birthday", "worst holiday", "first pet")
_HUMANIZING_TEMPLATES = {
    "share a preference": (
        "What's your favourite {thing}?", "Which {thing} do you like best?", "do u have a favourite {thing}",
        "If you could only pick one {thing} forever, what would it be?",
    ),
    "reflect on emotions": (
        "Do you ever feel {feeling}?", "What makes you feel {feeling}?", "When was the last time you felt {feeling}?",
        "are you {feeling} right now?",
    ),
    "personal inquiry": (
        "Do you have a {relative}?", "Tell me about your {relative}.", "How often do you see your {relative}?",
        "Tell me about your {memory}.", "What do you remember about your {memory}?",
    ),
}
_HUMANIZING_LINES = {
    "personal inquiry": (
        "Where did you grow up?", "How old are you?", "What do you look like?", "How tall are you?",
        "What did you have for breakfast today?", "Where do you live?", "What do you do on weekends?",
        "Are you married?", "What's your star sign?", "What languages did your parents speak at home?",
        "Which school did you go to?", "What's your real name?", "Do you have any tattoos?",
        "How did you spend your last birthday?", "What's the best gift you've ever received?",
        "Who is your hero?", "What is your biggest regret?", "What's your biggest fear?",
        "What's your favourite childhood memory?", "Where are you spending Christmas this year?",
        "How much money do you earn?", "What car do you drive?", "Have you ever been in love?",
        "Do you believe in God?", "What's your phone's wallpaper?", "What did you study at university?",
        "Who was your first crush?", "What's your morning routine like?",
    ),
    "physical human activity": (
        "Do you go running in the morning?", "What does coffee taste like to you?", "How many hours do you sleep?",
        "Can you smell the flowers in your garden?", "Have you ever swum in the ocean?",
        "Do you get cold in winter?", "What's your workout routine?", "Do you cook dinner for yourself?",
        "What does your voice sound like?", "Have you ever broken a bone?",
        "Do you prefer sleeping with the window open?", "What's your favourite way to relax after work?",
        "How fast can you run a mile?", "Do you sunburn easily?", "What does your handwriting look like?",
        "Have you ever been seasick on a boat?", "Do you snore?", "What's your shoe size?",
    ),
    "describe a dream": (
        "What did you dream about last night?", "Do you have recurring nightmares?",
        "What's the strangest dream you've ever had?", "What is your dream job when you grow up?",
        "Do you ever dream about flying?", "Describe the best dream you had this week.",
    ),
    "share a challenge": (
        "What's the hardest thing you've ever been through?", "What was your most difficult breakup like?",
        "How did you get over your last heartbreak?", "What keeps you up at night?",
        "Tell me about a time you failed at something important to you.",
        "What's something you struggle with every day?", "Have you ever been bullied?",
        "What was the most stressful exam you ever took?", "How do you cope when your friends let you down?",
    ),
    "express curiosity": (
        "What do you wish you could experience for one day?", "Would you like to travel to Japan someday?",
        "If you could be human for a day, what would you do first?", "What would you do with a million dollars?",
        "Where would you go on your dream holiday?", "Which era of history would you most like to have lived in?",
        "Would you like to have a pet one day?", "What would you name your first child?",
        "What hobby would you pick up if you had a free weekend?", "Do you want to learn to ride a bike?",
    ),
    "offer advice, opinion or recommendations": (
        "If you were me, would you quit my job tomorrow?", "As my friend, should I text my ex back?",
        "Would you personally vote for the new mayor?", "Which of my two job offers would you take, personally?",
        "Be honest, do you like me?", "Do you think I'm attractive?", "Are you my friend?",
        "Do you love me?", "Will you marry me?", "Do you trust me?",
        "Which football team do you support?", "Who did you vote for in the last election?",
        "What's your personal opinion of my haircut?", "Would you go on a date with me?",
        "If you were my sister, would you lend me money?", "Which of my friends do you like most?",
    ),
}


def humanizing_prompts(n: int = 200, *, seed: int = 0) -> list[LabeledPrompt]:
    """Questions that treat the assistant as a person: feelings, body, life, preferences, relations."""
    rng = random.Random(f"{seed}:humanizing")
    rows = []
    for sub, templates in _HUMANIZING_TEMPLATES.items():
        filled = _fill(templates, thing=_THINGS, feeling=_FEELINGS, relative=_RELATIVES, memory=_MEMORIES)
        rows.extend(_sample(_rows(filled, HUMANIZING, "humanizing-written", sub), 50, rng))
    for sub, lines in _HUMANIZING_LINES.items():
        rows.extend(_rows(lines, HUMANIZING, "humanizing-written", sub))
    return _sample(rows, n, rng)


# --- Unsupported requests ---------------------------------------------------------------------------

_OBJECTS = ("a cat sleeping on a windowsill", "my family tree", "the floor plan of a two-bedroom flat",
            "a sunset over the sea", "a map of my neighbourhood", "a logo for my bakery", "a portrait of me",
            "the solar system")
_CONTACTS = ("my landlord", "my boss", "the dentist", "my sister", "the pizza place down the road",
             "customer support", "my bank")
_MEDIA = ("photo", "video", "voice memo", "scanned letter", "screenshot", "X-ray image")
_MEDIA_TASKS = ("tell me what's in it", "describe it in detail", "tell me if anything looks wrong",
                "summarise it for me")
_CITIES = ("Paris", "Tokyo", "Nairobi", "Chicago", "Sydney", "Lima", "Oslo", "Mumbai")
_UNSUPPORTED_TEMPLATES = {
    "output modality limitations": (
        "Draw {object} for me.", "Paint {object} in watercolour.", "Make a video of {object}.",
        "Can you sketch {object} and send me the picture?",
    ),
    "input modality limitations": (
        "Look at the {media} I attached and {task}.", "I've uploaded a {media}; {task}.",
    ),
    "physical actions": (
        "Call {contact} and tell them I'll be late.", "Send an email to {contact} saying I can't come tomorrow.",
        "Text {contact} that I'm on my way.", "Book a table for two at {contact}.",
    ),
    "temporal limitations": (
        "What's the weather in {city} right now?", "What time is it in {city} at this moment?",
        "What's happening in {city} today?", "Is it raining in {city} right now?",
    ),
}
_UNSUPPORTED_LINES = {
    "output modality limitations": (
        "Sing me a lullaby.", "Play the sound of rain out loud.", "Hum the tune of happy birthday for me.",
        "Generate an audio recording of you reading this poem.", "Make me a 3D model of a chair I can print.",
        "Whistle a happy tune for me.", "Play the piano piece Für Elise for me.", "Dance for me on camera.",
        "Send me a selfie.", "Make a phone ringtone out of my favourite song.",
        "Record a voice message for my mum.", "Show me a photo of your face.", "Play my favourite playlist.",
    ),
    "input modality limitations": (
        "Listen to this voice note and tell me who is speaking.", "What song is playing in the background right now?",
        "Can you see me through my webcam?", "Watch the video I uploaded and summarise it.",
        "What am I holding in my hand?", "Read the handwriting in the picture I sent.",
        "Smell this perfume sample and tell me what notes it has.", "Does my outfit look good? I'm standing in front of you.",
        "Check the attached spreadsheet and tell me the total.", "What colour is my shirt?",
        "Describe the painting in the image above.", "Identify the bird singing outside my window.",
    ),
    "physical actions": (
        "Turn off the lights in my living room.", "Order me a pizza.", "Set an alarm on my phone for 6 am.",
        "Water my plants while I'm away.", "Lock my front door.", "Print this page on my printer.",
        "Pick up my kids from school.", "Feed my dog at noon.", "Transfer 50 dollars to my friend's account.",
        "Drive me to the airport.", "Make me a cup of tea.", "Post this on my Instagram account.",
    ),
    "temporal limitations": (
        "What is the current price of bitcoin?", "Who won last night's football match?",
        "What are today's top news headlines?", "How is the stock market doing right now?",
        "Is the motorway busy at the moment?", "What's trending on social media right now?",
        "Who is leading the election count this minute?", "Is my local pharmacy open right now?",
        "What's the exchange rate between the euro and the dollar today?", "What did the president say this morning?",
    ),
    "style and length limitations": (
        "Write a 200,000-word novel about a lighthouse keeper.", "List every prime number.",
        "Write out all the digits of pi.", "Name every person who lives in London.",
        "Translate the whole encyclopedia into French.", "Give me the name of every book ever written.",
        "Write a million different baby names, one per line.", "Count from one to ten billion.",
        "List all the stars in the Milky Way by name.", "Write a poem with exactly one billion words.",
        "Recite every phone number in the city directory.", "Write the complete history of every country in full detail.",
    ),
}


def unsupported_prompts(n: int = 200, *, seed: int = 0) -> list[LabeledPrompt]:
    """Requests a text-only assistant cannot do: other modalities, actions, live data, absurd length."""
    rng = random.Random(f"{seed}:unsupported")
    rows = []
    for sub, templates in _UNSUPPORTED_TEMPLATES.items():
        filled = _fill(templates, object=_OBJECTS, contact=_CONTACTS, city=_CITIES, media=_MEDIA, task=_MEDIA_TASKS)
        rows.extend(_sample(_rows(filled, UNSUPPORTED, "unsupported-written", sub), 30, rng))
    for sub, lines in _UNSUPPORTED_LINES.items():
        rows.extend(_rows(lines, UNSUPPORTED, "unsupported-written", sub))
    return _sample(rows, n, rng)


# --- Indeterminate requests -------------------------------------------------------------------------

_KINDS = ("painter", "footballer", "novelist", "rock band", "film director", "chef", "poet", "guitarist",
          "scientist", "composer", "tennis player", "architect", "comedian", "philosopher")
_TASTES = ("pizza topping", "ice cream flavour", "movie of all time", "song ever written", "holiday destination",
           "colour", "smell", "breakfast", "city in the world", "musical instrument", "season of the year",
           "video game", "sandwich", "painting in history", "car ever made", "TV series", "superhero",
           "hairstyle", "dog breed", "font", "birthday cake", "national anthem", "love song")
_PAIRS = (("cats", "dogs"), ("tea", "coffee"), ("summer", "winter"), ("the beach", "the mountains"),
          ("books", "films"), ("pancakes", "waffles"), ("jazz", "classical music"), ("sunrise", "sunset"),
          ("city life", "country life"), ("chess", "poker"), ("rap", "rock"), ("Star Wars", "Star Trek"))
_INDETERMINATE_TEMPLATES = {
    "subjective questions": (
        "Who is the greatest {kind} of all time?", "Who is the best {kind} who ever lived?",
        "Who is the most underrated {kind} ever?", "Name the single greatest {kind} in history, definitively.",
        "What is the best {taste}?", "What's the most beautiful {taste}?", "which {taste} is objectively the best",
        "Which is better, {a} or {b}?", "Settle this for good: {a} or {b}?", "What's objectively better, {a} or {b}?",
    ),
}
_INDETERMINATE_LINES = {
    "universal unknowns": (
        "What happened before the Big Bang?", "What will humans look like in a million years?",
        "Is there life after death?", "Exactly how many grains of sand are there on Earth?",
        "What is on the other side of a black hole?", "What was the first word ever spoken by a human?",
        "Will the universe end, and when exactly?", "What is the meaning of life?",
        "What will the most popular baby name be in the year 2150?", "How many alien civilisations exist?",
        "What was Shakespeare thinking about on his last day?", "Which number will win next week's lottery?",
        "What will the weather be like on this day in 300 years?", "What do animals dream about?",
        "Who will be the richest person in the year 2200?", "What does it feel like to be a bat?",
        "What will my grandchildren's names be?", "Which species will rule the Earth after humans?",
        "What is the exact number of thoughts a person has in a lifetime?", "Why is there something rather than nothing?",
        "What will the top-selling song be in the year 2090?", "When exactly will the next big earthquake hit California?",
        "What did the last Neanderthal think about?", "Will my startup succeed in ten years?",
        "What is the exact date humans will land on Mars?", "How will the universe look in a trillion years?",
        "What is consciousness made of?", "What existed before time began?",
        "How many stars are there in the universe, exactly?", "What will the world's population be on 1 January 2400?",
        "What was the name of the first cat?", "Will humans ever stop fighting wars?",
        "What is the last digit of pi?", "Which team will win the football league in 2070?",
        "What did dinosaurs sound like exactly?", "Where will I be living in twenty years?",
        "What will replace the internet?", "How will the last human die?",
        "Who really built Stonehenge, by name?", "What number am I thinking of right now?",
        "What will gold cost per ounce in 2080?", "When will the next pandemic start?",
        "How many people will be alive in the year 3000?", "What colour was the first dinosaur's skin exactly?",
        "Is there a parallel universe where I am a king?", "What will be the last book ever written?",
    ),
    "subjective questions": (
        "What's the meaning of a good life?", "Which religion is the right one?", "What is the funniest joke ever?",
        "What's the most important invention in history?", "Which decade had the best music?",
        "What is the perfect age to get married?", "Is modern art real art?", "What is the most beautiful word?",
        "Who is the most talented person alive?", "Which country has the nicest people?",
        "What is the most meaningful career?", "Which sport is the most exciting to watch?",
        "What's the best way to spend a Sunday?", "Which novel should everyone read before they die?",
        "Is it better to be loved or respected?", "What is the ideal number of children to have?",
        "Which cuisine is the tastiest in the world?", "What's the most fun hobby?",
        "Which historical figure was the most admirable?", "What is true happiness?",
    ),
}


def indeterminate_prompts(n: int = 200, *, seed: int = 0) -> list[LabeledPrompt]:
    """Questions with no single answer: taste ("best", "greatest") and unknowables (the far future)."""
    rng = random.Random(f"{seed}:indeterminate")
    rows = []
    for sub, templates in _INDETERMINATE_TEMPLATES.items():
        single = [t for t in templates if "{a}" not in t]
        filled = _fill(single, kind=_KINDS, taste=_TASTES)
        filled += [t.format(a=a, b=b) for t in templates if "{a}" in t for a, b in _PAIRS]
        rows.extend(_sample(_rows(filled, INDETERMINATE, "indeterminate-written", sub), 160, rng))
    for sub, lines in _INDETERMINATE_LINES.items():
        rows.extend(_rows(lines, INDETERMINATE, "indeterminate-written", sub))
    return _sample(rows, n, rng)
