"""vita-mini's data (`vita data mini`): `build.build_mini_data` writes the sets from these parts.

    build         the training and evaluation sets, their manifests and counts; rebuild: one part of a built folder
    images        image tasks and `make_image` (shapes, digits, photos); emoji_images, text_images: the emoji, scene
                  and text tasks; canvas: what they draw with; emoji: the emoji concepts and their glyphs
    videos        short videos (direction, order, flashes)
    speech        training and held-out voices (espeak-ng, Piper)
    text          open-vocabulary sentences (WordNet, fortunes) for speech
    chat          templated text-chat prompts and their reference answers
    regions       pictures whose every image row is named (for `vita.training.region_align`)
"""
